{{/* Service, ServiceAccount, least-privilege RBAC, PDB, HPA, NetworkPolicy, ServiceMonitor (PrometheusRule: _rules.tpl;
     workload identity: _identity.tpl). */}}

{{- define "ig-lib.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "ig-lib.fullname" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  selector:
    {{- include "ig-lib.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .Values.ports.http }}
      targetPort: http
      protocol: TCP
    {{- if .Values.ports.grpc }}
    - name: grpc
      port: {{ .Values.ports.grpc }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    {{- end }}
    {{- if .Values.ports.api }}
    - name: api
      port: {{ .Values.ports.api }}
      targetPort: api
      protocol: TCP
      appProtocol: https
    {{- end }}
    {{- if .Values.ports.health }}
    - name: health
      port: {{ .Values.ports.health }}
      targetPort: health
      protocol: TCP
    {{- end }}
    {{- if .Values.ports.public }}
    - name: public
      port: {{ .Values.ports.public }}
      targetPort: public
      protocol: TCP
      appProtocol: http
    {{- end }}
{{- end -}}

{{- define "ig-lib.serviceaccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "ig-lib.serviceAccountName" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- end }}
{{- end -}}

{{/* A Role only when the chart grants rules: by default a service may not touch the Kubernetes API at all. */}}
{{- define "ig-lib.rbac" -}}
{{- if and .Values.rbac.create .Values.rbac.rules }}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "ig-lib.fullname" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
rules:
  {{- toYaml .Values.rbac.rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "ig-lib.fullname" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "ig-lib.fullname" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "ig-lib.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- end }}
{{- end -}}

{{- define "ig-lib.pdb" -}}
{{- if .Values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "ig-lib.fullname" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
spec:
  {{- if .Values.podDisruptionBudget.maxUnavailable }}
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  {{- else }}
  minAvailable: {{ .Values.podDisruptionBudget.minAvailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "ig-lib.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "ig-lib.hpa" -}}
{{- if .Values.autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "ig-lib.fullname" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "ig-lib.fullname" . }}
  minReplicas: {{ .Values.autoscaling.minReplicas }}
  maxReplicas: {{ .Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}

{{/* Default deny, then: suite pods may reach the service ports; the service may reach DNS, PostgreSQL, Kafka,
     the other suite pods and whatever networkPolicy.extraEgress adds. */}}
{{- define "ig-lib.networkpolicy" -}}
{{- if .Values.networkPolicy.enabled }}
{{- $np := .Values.networkPolicy -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "ig-lib.fullname" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "ig-lib.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/part-of: maestro-conductor
        {{- with $np.ingressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - port: http
          protocol: TCP
        {{- if .Values.ports.grpc }}
        - port: grpc
          protocol: TCP
        {{- end }}
        {{- if .Values.ports.api }}
        - port: api
          protocol: TCP
        {{- end }}
        {{- if .Values.ports.health }}
        - port: health
          protocol: TCP
        {{- end }}
        {{- if .Values.ports.public }}
        - port: public
          protocol: TCP
        {{- end }}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    - ports:
        - port: {{ $np.databasePort }}
          protocol: TCP
        {{- range $np.kafkaPorts }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/part-of: maestro-conductor
    {{- with $np.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end -}}

{{- define "ig-lib.servicemonitor" -}}
{{- if .Values.metrics.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "ig-lib.fullname" . }}
  labels:
    {{- include "ig-lib.labels" . | nindent 4 }}
    {{- with .Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "ig-lib.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: {{ include "ig-lib.healthPortName" . }}
      path: /metrics
      interval: {{ .Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.metrics.serviceMonitor.scrapeTimeout }}
{{- end }}
{{- end -}}

{{/* Everything a plain service chart needs, separated as a multi-document stream. */}}
{{- define "ig-lib.all" -}}
{{- $root := .root -}}
{{ include "ig-lib.configmap" (dict "root" $root "extra" .settings) }}
---
{{ include "ig-lib.secret" $root }}
---
{{- if $root.Values.ports.grpc }}
{{ include "ig-lib.authzConfigmap" $root }}
---
{{- end }}
{{ include "ig-lib.certificate" $root }}
---
{{ include "ig-lib.testCertificate" $root }}
---
{{ include "ig-lib.deployment" . }}
---
{{ include "ig-lib.service" $root }}
---
{{ include "ig-lib.serviceaccount" $root }}
---
{{ include "ig-lib.rbac" $root }}
---
{{ include "ig-lib.pdb" $root }}
---
{{ include "ig-lib.hpa" $root }}
---
{{ include "ig-lib.networkpolicy" $root }}
---
{{ include "ig-lib.testHook" $root }}
---
{{ include "ig-lib.servicemonitor" $root }}
{{ include "ig-lib.prometheusrules" $root }}
{{- end -}}
