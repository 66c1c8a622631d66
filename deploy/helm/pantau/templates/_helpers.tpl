{{/* Names: <release>-pantau, or the release name when it already says pantau. */}}
{{- define "pantau.fullname" -}}
{{- if contains "pantau" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-pantau" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pantau.labels" -}}
app.kubernetes.io/name: pantau
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pantau
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector of one stage's pods; `root` is the chart's context. */}}
{{- define "pantau.selectorLabels" -}}
app.kubernetes.io/name: pantau
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pantau.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "pantau.configName" -}}
{{- printf "%s-config" (include "pantau.fullname" .) -}}
{{- end -}}

{{- define "pantau.configText" -}}
{{- if .Values.config -}}
{{- .Values.config -}}
{{- else -}}
{{- .Files.Get "files/pantau.yaml" -}}
{{- end -}}
{{- end -}}

{{/* One variable from existingSecret; `optional` for the keys a deployment may leave out. */}}
{{- define "pantau.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.existingSecret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* The environment every stage gets: docker-compose.yml's, with the addresses from the
values and every secret from existingSecret. `stage` names the stage. */}}
{{- define "pantau.env" -}}
{{- $v := .root.Values -}}
{{- $keys := $v.secretKeys -}}
- name: PANTAU_CONFIG
  value: /etc/pantau/pantau.yaml
- name: PANTAU_SHARED_DATA
  value: /data
- name: PANTAU__KAFKA__BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: PANTAU__KAFKA__SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
- name: PANTAU__KAFKA__SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
- name: PANTAU__KAFKA__SASL_USERNAME
  value: {{ $v.kafka.username | quote }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU__KAFKA__SASL_PASSWORD" "key" $keys.kafkaPassword) }}
{{- if $v.kafka.caSecret }}
- name: PANTAU__KAFKA__SSL_CA_FILE
  value: /etc/pantau-kafka-ca/ca.crt
{{- end }}
- name: PANTAU__POSTGRES__HOST
  value: {{ $v.postgres.host | quote }}
- name: PANTAU__POSTGRES__PORT
  value: {{ $v.postgres.port | quote }}
- name: PANTAU__POSTGRES__DBNAME
  value: {{ $v.postgres.dbname | quote }}
- name: PANTAU__POSTGRES__USER
  value: {{ $v.postgres.user | quote }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU__POSTGRES__PASSWORD" "key" $keys.dbPassword) }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU__POSTGRES__WRITER_PASSWORD" "key" $keys.writerPassword) }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU__POSTGRES__GRAFANA_PASSWORD" "key" $keys.grafanaDbPassword) }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU__POSTGRES__ANALYST_PASSWORD" "key" $keys.analystPassword) }}
{{- if has .stage (list "console" "telegram" "migrate") }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU__POSTGRES__CONSOLE_PASSWORD" "key" $keys.consoleDbPassword) }}
{{- end }}
- name: PANTAU__MQTT__HOST
  value: {{ $v.mqtt.host | quote }}
- name: PANTAU__MQTT__PORT
  value: {{ $v.mqtt.port | quote }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU_MQTT_PASSWORD" "key" $keys.mqttPassword) }}
- name: PANTAU__DETECT__SNAPSHOT_DIR
  value: /var/lib/pantau/snapshots
- name: PANTAU__DETECTOR__EXPORTS_DIR
  value: /var/lib/pantau/models
- name: PANTAU__DUMPING__EVIDENCE__DIR
  value: /var/lib/pantau/evidence
- name: PANTAU__STREAMS__DATA_DIR
  value: /var/lib/pantau/streams
- name: PANTAU__RUNTIME__STATUS_DIR
  value: /var/lib/pantau/health
- name: PANTAU__RUNTIME__HEALTH_HOST
  value: "0.0.0.0"
- name: PANTAU__RUNTIME__HEALTH_PORT
  value: {{ $v.health.port | quote }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU_METRICS_TOKEN" "key" $keys.metricsToken "optional" true) }}
{{ include "pantau.secretEnv" (dict "root" .root "name" "PANTAU_TELEGRAM_TOKEN" "key" $keys.telegramToken "optional" true) }}
- name: PANTAU_TELEGRAM_CHAT_CC
  value: {{ $v.telegram.chatCc | quote }}
- name: PANTAU_TELEGRAM_CHAT_SOOKO
  value: {{ $v.telegram.chatSooko | quote }}
- name: PANTAU_SMTP_HOST
  value: {{ $v.smtp.host | quote }}
- name: PANTAU_SMTP_PORT
  value: {{ $v.smtp.port | quote }}
- name: PANTAU_GRAFANA_URL
  value: {{ $v.grafanaUrl | quote }}
- name: PANTAU_CONSOLE_URL
  value: {{ $v.consoleUrl | quote }}
- name: PANTAU__LOGGING__LEVEL
  value: {{ $v.logLevel | quote }}
{{- if eq .stage "console" }}
- name: PANTAU_CONSOLE_HOST
  value: "0.0.0.0"
- name: PANTAU_MAP_TILES_URL
  value: {{ $v.mapTilesUrl | quote }}
{{- end }}
{{- if eq .stage "ingest-http" }}
- name: PANTAU__INGEST__HTTP_HOST
  value: "0.0.0.0"
- name: PANTAU__INGEST__HTTP_PORT
  value: "8443"
{{- if $v.ingestHttpTlsSecret }}
- name: PANTAU__INGEST__HTTP_TLS_CERT
  value: /etc/pantau-tls/tls.crt
- name: PANTAU__INGEST__HTTP_TLS_KEY
  value: /etc/pantau-tls/tls.key
{{- end }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes of a stage's pod, and where each is mounted. The image's home,
/var/lib/pantau, is scratch space (status, faust's local tables, snapshots); the state
that must outlive a pod is in Kafka, PostgreSQL and the evidence claim. */}}
{{- define "pantau.usesEvidence" -}}
{{- if has . (list "detect" "notify" "console") }}true{{ end -}}
{{- end -}}

{{- define "pantau.volumes" -}}
{{- $v := .root.Values -}}
- name: config
  configMap:
    name: {{ include "pantau.configName" .root }}
- name: data
  persistentVolumeClaim:
    claimName: {{ $v.sharedData.existingClaim }}
    readOnly: true
- name: state
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if include "pantau.usesEvidence" .stage }}
- name: evidence
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-evidence" (include "pantau.fullname" .root)) $v.evidence.existingClaim }}
{{- end }}
{{- if and (eq .stage "ingest-http") $v.ingestHttpTlsSecret }}
- name: tls
  secret:
    secretName: {{ $v.ingestHttpTlsSecret }}
    # Root owns the files; the image's user must read the key, and is the only one there.
    defaultMode: 0444
{{- end }}
{{- if $v.kafka.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ $v.kafka.caSecret }}
{{- end }}
{{- end -}}

{{- define "pantau.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: config
  mountPath: /etc/pantau
  readOnly: true
- name: data
  mountPath: /data
  readOnly: true
- name: state
  mountPath: /var/lib/pantau
- name: tmp
  mountPath: /tmp
{{- if include "pantau.usesEvidence" .stage }}
- name: evidence
  mountPath: /var/lib/pantau/evidence
{{- end }}
{{- if and (eq .stage "ingest-http") $v.ingestHttpTlsSecret }}
- name: tls
  mountPath: /etc/pantau-tls
  readOnly: true
{{- end }}
{{- if $v.kafka.caSecret }}
- name: kafka-ca
  mountPath: /etc/pantau-kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* A StatefulSet pod's index (0 .. replicas - 1), from the label Kubernetes (1.28 and
newer) puts on every StatefulSet pod. */}}
{{- define "pantau.podIndex" -}}
valueFrom:
  fieldRef:
    fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
{{- end -}}
