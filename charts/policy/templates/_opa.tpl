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

{{- define "policy.opaVolumes" -}}
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
  args:
    - run
    - --server
    - --addr=127.0.0.1:{{ $opa.port }}
    - --diagnostic-addr=0.0.0.0:{{ $opa.diagnosticPort }}
    - --disable-telemetry
    - --log-format=json
    - --log-level={{ $opa.logLevel }}
    {{- if $opa.bundle.enabled }}
    - --set=services.bundles.url={{ required "opa.bundle.url is required when opa.bundle.enabled" $opa.bundle.url }}
    - --set=bundles.ig.service=bundles
    - --set=bundles.ig.resource={{ $opa.bundle.resource }}
    - --set=bundles.ig.polling.min_delay_seconds={{ $opa.bundle.minDelaySeconds }}
    - --set=bundles.ig.polling.max_delay_seconds={{ $opa.bundle.maxDelaySeconds }}
    {{- else }}
    - /policies
    {{- end }}
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
  {{- if not $opa.bundle.enabled }}
  volumeMounts:
    - name: rego
      mountPath: /policies
      readOnly: true
  {{- end }}
{{- end -}}
