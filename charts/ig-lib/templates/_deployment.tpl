{{/*
The service Deployment. Call with (dict "root" $ "containers" "<yaml list>" "volumes" "<yaml list>"
"initContainers" "<yaml list>" "mounts" "<yaml list>" "settings" (dict ...) "annotations" (dict ...)) to add
sidecars, volumes, init containers, volume mounts of the service's own container, chart-specific settings (they feed
the settings checksum, so a change rolls the pods) and pod annotations.
*/}}
{{- define "ig-lib.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $global := $v.global | default dict -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "ig-lib.fullname" $root }}
  labels:
    {{- include "ig-lib.labels" $root | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ $v.revisionHistoryLimit }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "ig-lib.selectorLabels" $root | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ig-lib.labels" $root | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/settings: {{ include "ig-lib.configmap" (dict "root" $root "extra" .settings) | sha256sum }}
        {{- /* The table is read at start-up: a changed table rolls the pods. A renewed certificate does not (the
               service reloads it from the mounted Secret). */}}
        {{- if $v.ports.grpc }}
        checksum/authz-table: {{ include "ig-lib.authzTable" $root | sha256sum }}
        {{- end }}
        {{- if $v.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $v.ports.health | default $v.ports.http | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with .annotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "ig-lib.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
      enableServiceLinks: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with .initContainers }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ include "ig-lib.name" $root }}
          image: {{ include "ig-lib.image" (dict "image" $v.image "appVersion" $root.Chart.AppVersion) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $v.ports.http }}
              protocol: TCP
            {{- if $v.ports.grpc }}
            - name: grpc
              containerPort: {{ $v.ports.grpc }}
              protocol: TCP
            {{- end }}
            {{- if $v.ports.api }}
            - name: api
              containerPort: {{ $v.ports.api }}
              protocol: TCP
            {{- end }}
            {{- if $v.ports.health }}
            - name: health
              containerPort: {{ $v.ports.health }}
              protocol: TCP
            {{- end }}
            {{- if $v.ports.public }}
            - name: public
              containerPort: {{ $v.ports.public }}
              protocol: TCP
            {{- end }}
          {{- /* SIGTERM only once the endpoint is out of every node's Service rules (the removal and SIGTERM start
                 together): a rollout then refuses no connection (tools/k8s/tests/real/test_real_day2.py). */}}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $v.preStopSleepSeconds }}
          envFrom:
            - configMapRef:
                name: {{ include "ig-lib.fullname" $root }}-settings
          env:
            - name: IG_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ include "ig-lib.databaseSecretName" $root }}
                  key: {{ $v.database.secretKey }}
            {{- /* The schema owner's DSN: migrations run as it at start-up, the service itself as IG_DATABASE_URL's. */}}
            - name: IG_MIGRATION_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ include "ig-lib.databaseSecretName" $root }}
                  key: {{ $v.database.migrationSecretKey }}
            {{- include "ig-lib.identityEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- trimSuffix "\n" . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ include "ig-lib.healthPortName" $root }}
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            failureThreshold: {{ $v.probes.startup.failureThreshold }}
            timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ include "ig-lib.healthPortName" $root }}
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
          {{- /* The gRPC port is mTLS-only and the kubelet's gRPC probe cannot present a certificate: every probe
                 reads the plain HTTP /healthz (on ports.health where the service keeps it apart from ports.http). */}}
          readinessProbe:
            httpGet:
              path: /healthz
              port: {{ include "ig-lib.healthPortName" $root }}
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "ig-lib.identityMounts" $root | nindent 12 }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
        {{- with .containers }}
        {{- . | nindent 8 }}
        {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpSizeLimit }}
        {{- include "ig-lib.identityVolumes" $root | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with (include "ig-lib.nodeSelector" $root) }}
      nodeSelector:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with (concat ($v.tolerations | default list) ($global.tolerations | default list)) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* The named port of /healthz and /metrics: "health" when the chart sets ports.health (a service whose HTTP port
     serves people, the portal), else "http". */}}
{{- define "ig-lib.healthPortName" -}}
{{- if .Values.ports.health }}health{{ else }}http{{ end }}
{{- end -}}
