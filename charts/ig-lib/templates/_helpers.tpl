{{/* Names and labels. Every service chart calls these with its root context. */}}

{{- define "ig-lib.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ig-lib.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ig-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ig-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ig-lib.labels" -}}
{{ include "ig-lib.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: maestro-conductor
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
ig.maestro/region: {{ include "ig-lib.region" . }}
{{- end -}}

{{/* Chart value first, then the region-wide global value, then the fallback. */}}
{{- define "ig-lib.region" -}}
{{- $global := .Values.global | default dict -}}
{{- required "region is required (set region or global.region, e.g. -f charts/values-region-a.yaml)" (.Values.region | default $global.region) -}}
{{- end -}}

{{/* (dict "root" $ "settings" $settings): IG_PROMETHEUS_URL from global.prometheus.url, for a chart whose service
     queries Prometheus; the others never get it (a setting nobody reads only misleads whoever reads the ConfigMap). */}}
{{- define "ig-lib.prometheusSettings" -}}
{{- with ((.root.Values.global | default dict).prometheus | default dict).url }}
{{- $_ := set $.settings "IG_PROMETHEUS_URL" . }}
{{- end }}
{{- end -}}

{{- define "ig-lib.kafkaBootstrap" -}}
{{- $global := .Values.global | default dict -}}
{{- $kafka := $global.kafka | default dict -}}
{{- required "kafka.bootstrap or global.kafka.bootstrap is required" (.Values.kafka.bootstrap | default $kafka.bootstrap) -}}
{{- end -}}

{{- define "ig-lib.databaseUrl" -}}
{{- $global := .Values.global | default dict -}}
{{- $database := $global.database | default dict -}}
{{- .Values.database.url | default $database.url | default "" -}}
{{- end -}}

{{/* A role's DSN: the server and database of database.url (or global.database.url) as `role`, authenticated with
     the workload certificate and verifying the server's (sslmode=verify-full against the CA of the same Secret).
     Call with (dict "root" $ "role" "ig_burn"). */}}
{{- define "ig-lib.roleDatabaseUrl" -}}
{{- $url := include "ig-lib.databaseUrl" .root -}}
{{- $u := urlParse $url -}}
{{- if $u.userinfo }}
{{- fail (printf "database.url: leave the user out (%s): the chart connects each service as its own roles, database.role and database.migratorRole" $url) }}
{{- end }}
{{- if regexMatch "(^|&)(sslmode|sslrootcert|sslcert|sslkey|password)=" $u.query }}
{{- fail "database.url: leave out TLS and password parameters: the chart sets sslmode=verify-full with the workload certificate" }}
{{- end }}
{{- $tls := include "ig-lib.tlsMountPath" .root -}}
{{- $query := printf "sslmode=verify-full&sslrootcert=%s/ca.crt&sslcert=%s/tls.crt&sslkey=%s/tls.key" $tls $tls $tls -}}
{{- if $u.query }}{{ $query = printf "%s&%s" $u.query $query }}{{ end -}}
{{- urlJoin (dict "scheme" $u.scheme "userinfo" .role "host" $u.host "path" $u.path "query" $query) -}}
{{- end -}}

{{- define "ig-lib.databaseSecretName" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "ig-lib.fullname" .)) -}}
{{- end -}}

{{- define "ig-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "ig-lib.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "ig-lib.image" -}}
{{- $tag := .image.tag | default .appVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "image %s: the tag 'latest' is not allowed; pin a version" .image.repository) -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "ig-lib.nodeSelector" -}}
{{- $global := .Values.global | default dict -}}
{{- $selector := merge (dict) (.Values.nodeSelector | default dict) ($global.nodeSelector | default dict) -}}
{{- with $selector }}
{{- toYaml . }}
{{- end }}
{{- end -}}
