{{/* Rego and data files go into the ConfigMap; OPA's own tests (*_test.rego) stay out. */}}
{{- define "policy.isPolicyFile" -}}
{{- if and (or (hasSuffix ".rego" .) (hasSuffix ".json" .)) (not (hasSuffix "_test.rego" .)) -}}true{{- end -}}
{{- end -}}

{{/* ConfigMap keys cannot hold "/", so ig/config/data.json becomes ig__config__data.json; the volume's items
     put every file back at its path, which matters for data.json (its directory is its place in data). */}}
{{- define "policy.regoKey" -}}
{{- trimPrefix "rego/" . | replace "/" "__" -}}
{{- end -}}

{{- define "policy.regoChecksum" -}}
{{- $sums := list -}}
{{- range $path, $content := .Files.Glob "rego/**" -}}
{{- $sums = append $sums (printf "%s=%s" $path (sha256sum (toString $content))) -}}
{{- end -}}
{{- join "," $sums | sha256sum | trunc 16 -}}
{{- end -}}

{{- define "policy.opaSystemChecksum" -}}
{{- $sums := list -}}
{{- range $path, $content := .Files.Glob "opa-system/*.rego" -}}
{{- $sums = append $sums (printf "%s=%s" $path (sha256sum (toString $content))) -}}
{{- end -}}
{{- join "," $sums | sha256sum | trunc 16 -}}
{{- end -}}

{{/* OPA's API is locked (--authentication=token --authorization=basic): opa-system/authz.rego (data.system.authz)
     lets only the bearer of the pod's token ask for decisions and read the loaded policies, and opens /health.
     The token is made per pod by an init container into a memory-backed emptyDir that only this pod's two
     containers mount: the policy service reads it (IG_OPA_TOKEN_FILE), OPA loads only its SHA-256 as
     data.system.opa_token. It never passes through the Kubernetes API and dies with the pod. */}}
{{- define "policy.opaTokenDir" -}}/run/opa-token{{- end -}}

{{- define "policy.opaTokenInit" -}}
{{- $v := .Values -}}
- name: opa-token
  image: {{ include "ig-lib.image" (dict "image" $v.image "appVersion" .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  command:
    - python
    - -c
    - |
      import hashlib, json, os, secrets
      token = secrets.token_urlsafe(32)
      def write(name, text):
          fd = os.open(os.path.join("{{ include "policy.opaTokenDir" . }}", name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
          with os.fdopen(fd, "w") as handle:
              handle.write(text)
      write("opa-token", token + "\n")
      write("opa-token-digest.json", json.dumps({"sha256": hashlib.sha256(token.encode()).hexdigest()}) + "\n")
  resources:
    {{- toYaml $v.opa.tokenInit.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: opa-token
      mountPath: {{ include "policy.opaTokenDir" . }}
{{- end -}}

{{- define "policy.opaTokenMount" -}}
- name: opa-token
  mountPath: {{ include "policy.opaTokenDir" . }}
  readOnly: true
{{- end -}}

{{- define "policy.opaVolumes" -}}
- name: opa-token
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: opa-system
  configMap:
    name: {{ include "ig-lib.fullname" . }}-opa-system
{{- if and .Values.opa.policies.configMap (not .Values.opa.bundle.enabled) }}
- name: rego
  configMap:
    name: {{ include "ig-lib.fullname" . }}-rego
    items:
      {{- range $path, $content := .Files.Glob "rego/**" }}
      {{- if include "policy.isPolicyFile" $path }}
      - key: {{ include "policy.regoKey" $path }}
        path: {{ trimPrefix "rego/" $path }}
      {{- end }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "policy.opaSidecar" -}}
{{- $opa := .Values.opa -}}
- name: opa
  image: {{ include "ig-lib.image" (dict "image" $opa.image "appVersion" "") | quote }}
  imagePullPolicy: {{ $opa.image.pullPolicy }}
  {{- /* OPA outlives the service: after its own SIGTERM (at the end of the same preStop sleep) the service still
         takes gRPC calls while its HTTP side stops (up to 3 s) and finishes them (up to 5 s), and each asks OPA. */}}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ add .Values.preStopSleepSeconds 10 }}
  args:
    - run
    - --server
    - --addr=127.0.0.1:{{ $opa.port }}
    - --diagnostic-addr=0.0.0.0:{{ $opa.diagnosticPort }}
    - --disable-telemetry
    - --log-format=json
    - --log-level={{ $opa.logLevel }}
    - --authentication=token
    - --authorization=basic
    {{- /* A ConfigMap volume holds each file three times over: the kubelet's timestamped "..<date>" directory,
           the "..data" link to it, and the file's own link. OPA would load every rule thrice ("multiple default
           rules") and refuse to start: only the plain names are loaded. */}}
    - --ignore=..*
    {{- if $opa.bundle.enabled }}
    - --set=services.bundles.url={{ required "opa.bundle.url is required when opa.bundle.enabled" $opa.bundle.url }}
    - --set=bundles.ig.service=bundles
    - --set=bundles.ig.resource={{ $opa.bundle.resource }}
    - --set=bundles.ig.polling.min_delay_seconds={{ $opa.bundle.minDelaySeconds }}
    - --set=bundles.ig.polling.max_delay_seconds={{ $opa.bundle.maxDelaySeconds }}
    {{- else }}
    - /policies
    {{- end }}
    - /opa-system
    - system.opa_token:{{ include "policy.opaTokenDir" . }}/opa-token-digest.json
  ports:
    - name: opa-diag
      containerPort: {{ $opa.diagnosticPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: {{ if $opa.bundle.enabled }}/health?bundles{{ else }}/health{{ end }}
      port: opa-diag
    periodSeconds: 2
    failureThreshold: 30
  livenessProbe:
    httpGet:
      path: /health
      port: opa-diag
    periodSeconds: 10
  readinessProbe:
    httpGet:
      path: {{ if $opa.bundle.enabled }}/health?bundles{{ else }}/health{{ end }}
      port: opa-diag
    periodSeconds: 5
  resources:
    {{- toYaml $opa.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: opa-system
      mountPath: /opa-system
      readOnly: true
    - name: opa-token
      mountPath: {{ include "policy.opaTokenDir" . }}
      readOnly: true
    {{- if not $opa.bundle.enabled }}
    - name: rego
      mountPath: /policies
      readOnly: true
    {{- end }}
{{- end -}}
