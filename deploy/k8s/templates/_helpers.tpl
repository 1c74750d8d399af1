{{- define "payments.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "payments.labels" -}}
app.kubernetes.io/part-of: payments
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "payments.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Environment every service process gets: the ConfigMap, the secrets, a stable
instance id (the pod name: kept across container restarts in the pod, so a crashed
consumer rejoins its group with its own partitions). */}}
{{- define "payments.env" -}}
- name: PAYMENTS_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PAYMENTS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: database-url
- name: PAYMENTS_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: webhook-secret
{{- end -}}

{{- define "payments.envFrom" -}}
- configMapRef:
    name: {{ include "payments.fullname" . }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "payments.setupEnv" -}}
- {name: PAYMENTS_SETUP_ONLY, value: "1"}
- {name: PAYMENTS_KAFKA_BOOTSTRAP, value: {{ .Values.kafka.bootstrap | quote }}}
- {name: PAYMENTS_TOPIC_PREFIX, value: {{ .Values.kafka.topicPrefix | quote }}}
- {name: PAYMENTS_TOPIC_PARTITIONS, value: {{ .Values.kafka.topicPartitions | quote }}}
- {name: PAYMENTS_LOG_LEVEL, value: {{ .Values.config.logLevel | quote }}}
{{- if .Values.sandbox.enabled }}
- {name: PAYMENTS_SANDBOX, value: "1"}
{{- end }}
- name: PAYMENTS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: database-url
- name: PAYMENTS_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: webhook-secret
{{- end -}}

{{- define "payments.checks" -}}
{{- range $key, $svc := .Values.services }}
{{- if and $svc.enabled (ge (int $.Values.podDisruptionBudget.minAvailable) (int $svc.replicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) must be below services.%s.replicas (%v), or no node could ever be drained" $.Values.podDisruptionBudget.minAvailable $key $svc.replicas) }}
{{- end }}
{{- if and $svc.enabled (gt (int $svc.replicas) (int $.Values.kafka.topicPartitions)) }}
{{- fail (printf "services.%s.replicas (%v) above kafka.topicPartitions (%v): the extra consumers would sit idle" $key $svc.replicas $.Values.kafka.topicPartitions) }}
{{- end }}
{{- end }}
{{- end -}}
