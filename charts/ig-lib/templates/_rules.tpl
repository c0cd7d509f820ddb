{{/* One PrometheusRule (Prometheus Operator) per rules/*.rules.yml file of the chart. Those files are the only copy
     of the rules: the local Prometheus loads them as they are and promtool unit-tests them (rules/*.tests.yml).
     Rendered only where the cluster serves monitoring.coreos.com/v1 PrometheusRule, so the chart still installs on a
     cluster without the Prometheus Operator (`helm template` needs --api-versions monitoring.coreos.com/v1/PrometheusRule). */}}
{{- define "ig-lib.prometheusrules" -}}
{{- $settings := .Values.metrics.prometheusRule -}}
{{- if and $settings.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule") }}
{{- range $path, $content := .Files.Glob "rules/*.rules.yml" }}
{{- $file := fromYaml (toString $content) }}
{{- if hasKey $file "Error" }}
{{- fail (printf "%s is not valid YAML: %s" $path $file.Error) }}
{{- end }}
{{- if not $file.groups }}
{{- fail (printf "%s has no rule groups" $path) }}
{{- end }}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ printf "%s-%s" (include "ig-lib.fullname" $) (base $path | trimSuffix ".rules.yml") | trunc 63 | trimSuffix "-" }}
  labels:
    {{- include "ig-lib.labels" $ | nindent 4 }}
    {{- with $settings.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    ig.maestro/rule-file: {{ $path | quote }}
spec:
  groups:
    {{- toYaml $file.groups | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}
