{{/* The chart's `helm test` hook: a pod of the service's own image calls the service through its Service's DNS name
     (<fullname>.<namespace>.svc.<cluster domain>). Over HTTP it fails unless the answer is 200 with
     `helmTest.expect` in its body. With `helmTest.grpc.method` it makes that gRPC call instead, over mTLS as the
     identity `helm-test` (the certificate Secret `helmTest.tls.secretName`; the authorization table lets it make one
     read-only call per service, for a tenant of its own that holds nothing), and fails unless the status is
     `helmTest.grpc.code` and `helmTest.expect` is in the answer (the response as JSON, or the error's details).
     Rendered when `helmTest.enabled`; run-to-completion, so it carries no probes (policies/k8s). */}}
{{- define "ig-lib.testIdentity" -}}helm-test{{- end -}}

{{- define "ig-lib.testSecretName" -}}
{{- $test := .Values.helmTest | default dict -}}
{{- $tls := $test.tls | default dict -}}
{{- $globalTls := (.Values.global | default dict).tls | default dict -}}
{{- $derived := "" -}}
{{- if $globalTls.secretNameSuffix -}}
{{- $derived = printf "%s-helm-test%s" (include "ig-lib.fullname" .) $globalTls.secretNameSuffix -}}
{{- end -}}
{{- required "helmTest.tls.secretName is required for a gRPC helm test: the Secret with the helm-test identity's certificate (or global.tls.secretNameSuffix to name it <fullname>-helm-test<suffix>)" ($tls.secretName | default $derived) -}}
{{- end -}}

{{/* The hook's certificate, when cert-manager issues the release's own (tls.certManager.issuerRef): a client
     certificate for the identity helm-test in the release's namespace. */}}
{{- define "ig-lib.testCertificate" -}}
{{- $test := .Values.helmTest | default dict -}}
{{- $certManager := (.Values.tls | default dict).certManager | default dict -}}
{{- if and $test.enabled ($test.grpc | default dict).method $certManager.issuerRef }}
{{- $known := (fromYaml (include "ig-lib.authzTable" .)).identities | default list -}}
{{- if not (has (include "ig-lib.testIdentity" .) $known) -}}
{{- fail "the helm test hook's identity helm-test is not in the authorization table (policies/authz/grpc-methods.yaml)" -}}
{{- end }}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ include "ig-lib.fullname" . }}-helm-test
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
    app.kubernetes.io/component: helm-test
spec:
  secretName: {{ include "ig-lib.testSecretName" . }}
  issuerRef:
    name: {{ $certManager.issuerRef.name }}
    kind: {{ $certManager.issuerRef.kind | default "ClusterIssuer" }}
    group: {{ $certManager.issuerRef.group | default "cert-manager.io" }}
  commonName: {{ include "ig-lib.testIdentity" . }}
  uris:
    - {{ printf "spiffe://%s/ns/%s/sa/%s" ($certManager.trustDomain | default "maestro.local") .Release.Namespace (include "ig-lib.testIdentity" .) }}
  privateKey:
    algorithm: ECDSA
    size: 256
    encoding: PKCS8
    rotationPolicy: Always
  duration: {{ $certManager.duration | default "24h" }}
  renewBefore: {{ $certManager.renewBefore | default "8h" }}
  usages:
    - digital signature
    - client auth
{{- end }}
{{- end -}}

{{- define "ig-lib.testHook" -}}
{{- $v := .Values -}}
{{- $test := $v.helmTest | default dict -}}
{{- if $test.enabled }}
{{- $global := $v.global | default dict -}}
{{- $grpc := $test.grpc | default dict -}}
{{- $domain := ($v.tls.certManager | default dict).clusterDomain | default "cluster.local" -}}
{{- $host := printf "%s.%s.svc.%s" (include "ig-lib.fullname" .) .Release.Namespace $domain -}}
{{- $url := "" -}}
{{- if $grpc.method -}}
{{- $url = printf "%s:%v" $host (required "helmTest.grpc.method needs ports.grpc" $v.ports.grpc) -}}
{{- else -}}
{{- $port := required (printf "helmTest.port: ports.%s is not set" $test.port) (index $v.ports $test.port) -}}
{{- $url = printf "http://%s:%v%s" $host $port $test.path -}}
{{- end -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "ig-lib.fullname" . }}-test
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
    app.kubernetes.io/component: helm-test
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation
    {{- if $grpc.method }}
    # whose certificate the hook's Secret holds (tools/k8s issues it where no cert-manager runs)
    ig.maestro/identity: {{ include "ig-lib.testIdentity" . }}
    {{- end }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with (include "ig-lib.nodeSelector" .) }}
  nodeSelector:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with (concat ($v.tolerations | default list) ($global.tolerations | default list)) }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: call
      image: {{ include "ig-lib.image" (dict "image" $v.image "appVersion" .Chart.AppVersion) | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command:
        - python
        - -c
        - |
          {{- if $grpc.method }}
          import importlib, json, os, sys
          from datetime import datetime, timezone
          import grpc
          from google.protobuf import descriptor_pool, json_format, message_factory
          importlib.import_module(os.environ["IG_TEST_GRPC_MODULE"])
          path = os.environ["IG_TEST_GRPC_METHOD"]
          service, name = path.strip("/").rsplit("/", 1)
          method = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
          body = (os.environ["IG_TEST_BODY"] or "{}").replace("@now", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
          request = json_format.Parse(body, message_factory.GetMessageClass(method.input_type)())
          answer_type = message_factory.GetMessageClass(method.output_type)
          read = lambda name: open(os.path.join(os.environ["IG_TLS_DIR"], name), "rb").read()
          credentials = grpc.ssl_channel_credentials(read("ca.crt"), read("tls.key"), read("tls.crt"))
          with grpc.secure_channel(os.environ["IG_TEST_URL"], credentials) as channel:
              kind = channel.unary_stream if method.server_streaming else channel.unary_unary
              call = kind(path, request_serializer=type(request).SerializeToString, response_deserializer=answer_type.FromString)
              try:
                  answer = call(request, timeout=10)
                  answers = list(answer) if method.server_streaming else [answer]
                  code, text = "OK", json.dumps([json_format.MessageToDict(a) for a in answers])
              except grpc.RpcError as error:
                  code, text = error.code().name, error.details() or ""
          print(code, text[:500])
          sys.exit(0 if code == os.environ["IG_TEST_GRPC_CODE"] and os.environ["IG_TEST_EXPECT"] in text else 1)
          {{- else }}
          import os, sys, urllib.request
          body = os.environ["IG_TEST_BODY"].encode() or None
          request = urllib.request.Request(os.environ["IG_TEST_URL"], data=body, method=os.environ["IG_TEST_METHOD"],
                                           headers={"Content-Type": "application/json"})
          with urllib.request.urlopen(request, timeout=10) as response:
              text = response.read().decode(errors="replace")
          print(response.status, text[:500])
          sys.exit(0 if response.status == 200 and os.environ["IG_TEST_EXPECT"] in text else 1)
          {{- end }}
      env:
        - name: IG_TEST_URL
          value: {{ $url | quote }}
        {{- if $grpc.method }}
        - name: IG_TEST_GRPC_METHOD
          value: {{ $grpc.method | quote }}
        - name: IG_TEST_GRPC_MODULE
          value: {{ required "helmTest.grpc.module: the generated module that defines the service" $grpc.module | quote }}
        - name: IG_TEST_GRPC_CODE
          value: {{ $grpc.code | default "OK" | quote }}
        - name: IG_TLS_DIR
          value: /var/run/ig/tls
        {{- end }}
        - name: IG_TEST_METHOD
          value: {{ $test.method | default "GET" | quote }}
        - name: IG_TEST_BODY
          value: {{ $test.body | default "" | replace "@region" (include "ig-lib.region" .) | quote }}
        - name: IG_TEST_EXPECT
          value: {{ $test.expect | default "" | quote }}
      resources:
        requests:
          cpu: 10m
          memory: 32Mi
        limits:
          cpu: 200m
          memory: 128Mi
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $grpc.method }}
        - name: tls
          mountPath: /var/run/ig/tls
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
    {{- if $grpc.method }}
    - name: tls
      secret:
        secretName: {{ include "ig-lib.testSecretName" . }}
        defaultMode: 288  # 0440
    {{- end }}
{{- end }}
{{- end -}}
