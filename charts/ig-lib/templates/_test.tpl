{{/* The chart's `helm test` hook: a pod of the service's own image calls the service through its Service's DNS name
     (<fullname>.<namespace>.svc.<cluster domain>) and fails unless the answer is 200 with `helmTest.expect` in
     its body. Rendered when `helmTest.enabled`; run-to-completion, so it carries no probes (policies/k8s). */}}
{{- define "ig-lib.testHook" -}}
{{- $v := .Values -}}
{{- $test := $v.helmTest | default dict -}}
{{- if $test.enabled }}
{{- $global := $v.global | default dict -}}
{{- $port := required (printf "helmTest.port: ports.%s is not set" $test.port) (index $v.ports $test.port) -}}
{{- $domain := ($v.tls.certManager | default dict).clusterDomain | default "cluster.local" -}}
{{- $url := printf "http://%s.%s.svc.%s:%v%s" (include "ig-lib.fullname" .) .Release.Namespace $domain $port $test.path -}}
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
          import os, sys, urllib.request
          body = os.environ["IG_TEST_BODY"].encode() or None
          request = urllib.request.Request(os.environ["IG_TEST_URL"], data=body, method=os.environ["IG_TEST_METHOD"],
                                           headers={"Content-Type": "application/json"})
          with urllib.request.urlopen(request, timeout=10) as response:
              text = response.read().decode(errors="replace")
          print(response.status, text[:500])
          sys.exit(0 if response.status == 200 and os.environ["IG_TEST_EXPECT"] in text else 1)
      env:
        - name: IG_TEST_URL
          value: {{ $url | quote }}
        - name: IG_TEST_METHOD
          value: {{ $test.method | default "GET" | quote }}
        - name: IG_TEST_BODY
          value: {{ $test.body | default "" | quote }}
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
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
{{- end }}
{{- end -}}
