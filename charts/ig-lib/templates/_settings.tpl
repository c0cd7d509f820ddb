{{/*
IG_* settings of the service (ConfigMap) and its database URL (Secret).
Call with (dict "root" $ "extra" (dict "IG_OPA_URL" "...")) to add chart-specific settings.
*/}}
{{- define "ig-lib.configmap" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $global := $v.global | default dict -}}
{{- $settings := dict
  "IG_SERVICE_NAME" (include "ig-lib.name" $root)
  "IG_REGION" (include "ig-lib.region" $root)
  "IG_LOG_LEVEL" $v.logLevel
  "IG_KAFKA_BOOTSTRAP" (include "ig-lib.kafkaBootstrap" $root)
  "IG_HTTP_HOST" "0.0.0.0"
  "IG_HTTP_PORT" (toString $v.ports.http)
-}}
{{- if $v.ports.health }}
{{- $_ := set $settings "IG_HEALTH_PORT" (toString $v.ports.health) }}
{{- end }}
{{- if $v.ports.grpc }}
{{- $_ := set $settings "IG_GRPC_HOST" "0.0.0.0" }}
{{- $_ := set $settings "IG_GRPC_PORT" (toString $v.ports.grpc) }}
{{- end }}
{{- $reserved := splitList " " (include "ig-lib.reservedSettings" $root) }}
{{- range $key, $value := (.extra | default dict) }}
{{- $_ := set $settings $key (toString $value) }}
{{- end }}
{{- range $key, $value := (merge (dict) ($v.settings | default dict) ($global.settings | default dict)) }}
{{- if not (regexMatch "^IG_[A-Z0-9_]+$" $key) }}
{{- fail (printf "settings key %q must be an IG_* environment variable name" $key) }}
{{- end }}
{{- if has $key $reserved }}
{{- fail (printf "settings key %s is not settable: the chart sets IG_TLS_DIR, IG_AUTHZ_TABLE and IG_TENANT_RESIDENCY_FILE from tls.*, authz.* and tenantResidency.*, and gRPC reflection (IG_GRPC_REFLECTION) stays off in a cluster" $key) }}
{{- end }}
{{- $_ := set $settings $key (toString $value) }}
{{- end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "ig-lib.fullname" $root }}-settings
  labels:
    {{- include "ig-lib.labels" $root | nindent 4 }}
data:
  {{- range $key := keys $settings | sortAlpha }}
  {{ $key }}: {{ get $settings $key | quote }}
  {{- end }}
{{- end -}}

{{- define "ig-lib.secret" -}}
{{- if not .Values.database.existingSecret }}
{{- $url := include "ig-lib.databaseUrl" . }}
{{- if not $url }}
{{- fail "set database.url (or global.database.url), or database.existingSecret naming a Secret with the URL" }}
{{- end }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "ig-lib.databaseSecretName" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
type: Opaque
stringData:
  {{ .Values.database.secretKey }}: {{ include "ig-lib.roleDatabaseUrl" (dict "root" . "role" .Values.database.role) | quote }}
  {{ .Values.database.migrationSecretKey }}: {{ include "ig-lib.roleDatabaseUrl" (dict "root" . "role" .Values.database.migratorRole) | quote }}
{{- end }}
{{- end -}}
