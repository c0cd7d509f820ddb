{{/* The decision log's write-ahead log (IG_DECISION_LOG_WAL_DIR): answered decisions wait here until the writer
     process has them in PostgreSQL. An emptyDir survives a container restart, not the pod; a PVC survives both. */}}
{{- define "policy.walVolume" -}}
- name: decision-log-wal
  {{- if .Values.decisionLogWal.persistentVolumeClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.decisionLogWal.persistentVolumeClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.decisionLogWal.sizeLimit }}
  {{- end }}
{{- end -}}

{{- define "policy.walMount" -}}
- name: decision-log-wal
  mountPath: {{ .Values.decisionLogWal.mountPath }}
{{- end -}}
