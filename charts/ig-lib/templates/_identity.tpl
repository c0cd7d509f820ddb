{{/*
Workload identity: the certificate Secret every service mounts (IG_TLS_DIR), the gRPC authorization table it
enforces (IG_AUTHZ_TABLE) and, optionally, the cert-manager Certificate that writes the Secret.
*/}}

{{- define "ig-lib.tlsSecretName" -}}
{{- $tls := .Values.tls | default dict -}}
{{- $global := .Values.global | default dict -}}
{{- $globalTls := $global.tls | default dict -}}
{{- $derived := "" -}}
{{- if $globalTls.secretNameSuffix -}}
{{- $derived = printf "%s%s" (include "ig-lib.fullname" .) $globalTls.secretNameSuffix -}}
{{- end -}}
{{- required "tls.secretName is required: the Secret with this workload's certificate (tls.crt, tls.key, ca.crt; the layout cert-manager writes, see charts/README.md \"Workload identity\"), or global.tls.secretNameSuffix to name it <fullname><suffix>" ($tls.secretName | default $derived) -}}
{{- end -}}

{{- define "ig-lib.tlsMountPath" -}}
{{- (.Values.tls | default dict).mountPath | default "/var/run/ig/tls" -}}
{{- end -}}

{{- define "ig-lib.authzMountPath" -}}
{{- (.Values.authz | default dict).mountPath | default "/etc/ig/authz" -}}
{{- end -}}

{{/* The table is the repository's own file: each chart's `authz` is a link to policies/authz, so there is no copy
     to drift (`helm package` stores the linked file itself). */}}
{{- define "ig-lib.authzTable" -}}
{{- $table := .Files.Get "authz/grpc-methods.yaml" -}}
{{- if not $table -}}
{{- fail (printf "chart %s has no authz/grpc-methods.yaml: link charts/%s/authz to ../../policies/authz" .Chart.Name .Chart.Name) -}}
{{- end -}}
{{- $table -}}
{{- end -}}

{{/* The service account name is the workload's identity (the SPIFFE ID's sa/<name>, the certificate's CN): one the
     table does not know is refused by every server the service calls, so such a release fails at render time. */}}
{{- define "ig-lib.checkIdentity" -}}
{{- $account := include "ig-lib.serviceAccountName" . -}}
{{- $known := (fromYaml (include "ig-lib.authzTable" .)).identities | default list -}}
{{- if not (has $account $known) -}}
{{- fail (printf "service account %q is not an identity of the authorization table (policies/authz/grpc-methods.yaml: %s): install the release as %q or set serviceAccount.name" $account (join ", " $known) (include "ig-lib.name" .)) -}}
{{- end -}}
{{- end -}}

{{- define "ig-lib.authzConfigmap" -}}
{{- include "ig-lib.checkIdentity" . -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "ig-lib.fullname" . }}-authz
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
data:
  grpc-methods.yaml: {{ include "ig-lib.authzTable" . | quote }}
{{- end -}}

{{/* The chart sets these from tls.*, authz.* and tenantResidency.* (an empty residency file would serve every
     tenant everywhere); reflection stays off in a cluster (a development setting only). */}}
{{- define "ig-lib.reservedSettings" -}}
IG_TLS_DIR IG_AUTHZ_TABLE IG_GRPC_REFLECTION IG_TENANT_RESIDENCY_FILE
{{- end -}}

{{/* The authorization table is what a gRPC server enforces: a service without a gRPC port (the portal) calls
     others with its certificate but serves no method, so it gets neither the table nor IG_AUTHZ_TABLE. */}}
{{- define "ig-lib.identityEnv" -}}
- name: IG_TLS_DIR
  value: {{ include "ig-lib.tlsMountPath" . | quote }}
{{- if .Values.ports.grpc }}
- name: IG_AUTHZ_TABLE
  value: {{ printf "%s/grpc-methods.yaml" (include "ig-lib.authzMountPath" .) | quote }}
{{- end }}
{{- end -}}

{{- define "ig-lib.identityMounts" -}}
- name: tls
  mountPath: {{ include "ig-lib.tlsMountPath" . }}
  readOnly: true
{{- if .Values.ports.grpc }}
- name: authz
  mountPath: {{ include "ig-lib.authzMountPath" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* 0440: readable by the pod's fsGroup (the service's group), by nobody else. */}}
{{- define "ig-lib.identityVolumes" -}}
- name: tls
  secret:
    secretName: {{ include "ig-lib.tlsSecretName" . }}
    defaultMode: 288  # 0440
{{- if .Values.ports.grpc }}
- name: authz
  configMap:
    name: {{ include "ig-lib.fullname" . }}-authz
{{- end }}
{{- end -}}

{{/* The names clients dial: the Service in its namespace, short to fully qualified. */}}
{{- define "ig-lib.dnsNames" -}}
{{- $certManager := (.Values.tls | default dict).certManager | default dict -}}
{{- $service := include "ig-lib.fullname" . -}}
{{- $namespace := .Release.Namespace -}}
{{- $names := list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace)
  (printf "%s.%s.svc.%s" $service $namespace ($certManager.clusterDomain | default "cluster.local")) -}}
{{- toYaml (concat $names ($certManager.extraDnsNames | default list)) -}}
{{- end -}}

{{- define "ig-lib.spiffeId" -}}
{{- $certManager := (.Values.tls | default dict).certManager | default dict -}}
{{- printf "spiffe://%s/ns/%s/sa/%s" ($certManager.trustDomain | default "maestro.local") .Release.Namespace (include "ig-lib.serviceAccountName" .) -}}
{{- end -}}

{{/* Rendered only with tls.certManager.issuerRef. CN = the service account name: Kafka and PostgreSQL take their
     principal from the subject, the suite's gRPC servers from the SPIFFE ID. */}}
{{- define "ig-lib.certificate" -}}
{{- $certManager := (.Values.tls | default dict).certManager | default dict -}}
{{- with $certManager.issuerRef }}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ include "ig-lib.fullname" $ }}
  labels:
    {{- include "ig-lib.labels" $ | nindent 4 }}
spec:
  secretName: {{ include "ig-lib.tlsSecretName" $ }}
  issuerRef:
    name: {{ required "tls.certManager.issuerRef.name is required when tls.certManager.issuerRef is set" .name }}
    kind: {{ .kind | default "ClusterIssuer" }}
    group: {{ .group | default "cert-manager.io" }}
  commonName: {{ include "ig-lib.serviceAccountName" $ }}
  uris:
    - {{ include "ig-lib.spiffeId" $ }}
  dnsNames:
    {{- include "ig-lib.dnsNames" $ | nindent 4 }}
  privateKey:
    algorithm: ECDSA
    size: 256
    encoding: PKCS8
    rotationPolicy: Always
  duration: {{ $certManager.duration | default "24h" }}
  renewBefore: {{ $certManager.renewBefore | default "8h" }}
  usages:
    - digital signature
    - server auth
    - client auth
{{- end }}
{{- end -}}
