{{/*
The tenants' residency pins, for the services that store or serve a tenant's data (evidence, audit-portal): a
tenant pinned to another region than the release's (IG_REGION) is refused there. The pins are the policy's own
data, policies/rego/ig/config/data.json (`tenants.<name>.residency.pinned_region`), the document the policy chart's
OPA loads: the chart's `residency` link to that directory ships the file itself, so there is no copy to drift;
`tenantResidency.existingConfigMap` names a ConfigMap holding `data.json` instead (an OPA bundle's data, say).
Without either, rendering fails: these services never run without the pins. IG_TENANT_RESIDENCY_FILE is reserved
(ig-lib.reservedSettings), so no `settings` entry can empty it.
*/}}
{{- define "ig-lib.tenantResidencyData" -}}
{{- $data := .Files.Get "residency/data.json" -}}
{{- if not $data -}}
{{- fail (printf "chart %s has no residency/data.json, the tenants' residency pins: link charts/%s/residency to ../../policies/rego/ig/config, or set tenantResidency.existingConfigMap to a ConfigMap holding data.json" .Chart.Name .Chart.Name) -}}
{{- end -}}
{{- $document := fromJson $data -}}
{{- if or (hasKey $document "Error") (not (kindIs "map" (get $document "tenants"))) -}}
{{- fail (printf "chart %s: residency/data.json is not the policy data (a JSON object with a `tenants` object)" .Chart.Name) -}}
{{- end -}}
{{- $data -}}
{{- end -}}

{{- define "ig-lib.tenantResidencyConfigMapName" -}}
{{- .Values.tenantResidency.existingConfigMap | default (printf "%s-residency" (include "ig-lib.fullname" .)) -}}
{{- end -}}

{{/* (dict "root" $ "settings" $settings "annotations" $annotations): sets IG_TENANT_RESIDENCY_FILE and the data's
     checksum (the file is read at start-up: changed pins roll the pods). */}}
{{- define "ig-lib.tenantResidencySettings" -}}
{{- $root := .root -}}
{{- $r := $root.Values.tenantResidency -}}
{{- $_ := set .settings "IG_TENANT_RESIDENCY_FILE" (printf "%s/data.json" $r.mountPath) -}}
{{- if not $r.existingConfigMap -}}
{{- $_ := set .annotations "checksum/tenant-residency" (include "ig-lib.tenantResidencyData" $root | sha256sum) -}}
{{- end -}}
{{- end -}}

{{- define "ig-lib.tenantResidencyVolume" -}}
- name: tenant-residency
  configMap:
    name: {{ include "ig-lib.tenantResidencyConfigMapName" . }}
    items:
      - key: data.json
        path: data.json
{{ end -}}

{{- define "ig-lib.tenantResidencyMount" -}}
- name: tenant-residency
  mountPath: {{ .Values.tenantResidency.mountPath }}
  readOnly: true
{{ end -}}

{{- define "ig-lib.tenantResidencyConfigMap" -}}
{{- if not .Values.tenantResidency.existingConfigMap }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "ig-lib.tenantResidencyConfigMapName" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
data:
  data.json: {{ include "ig-lib.tenantResidencyData" . | quote }}
{{- end }}
{{- end -}}
