{{/* Names ---------------------------------------------------------------- */}}

{{- define "alert-broadcaster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "alert-broadcaster.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The three services, in the order they appear in the data flow. */}}
{{- define "alert-broadcaster.components" -}}
listener processor notify
{{- end -}}

{{- define "alert-broadcaster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels: call with (dict "root" $ "component" "listener"). */}}
{{- define "alert-broadcaster.labels" -}}
helm.sh/chart: {{ include "alert-broadcaster.chart" .root }}
{{ include "alert-broadcaster.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: alert-broadcaster
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "alert-broadcaster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alert-broadcaster.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "alert-broadcaster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "alert-broadcaster.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "alert-broadcaster.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* API versions: pick the newest the cluster serves (helm template assumes current ones). */}}

{{- define "alert-broadcaster.hpa.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "autoscaling/v2" -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end -}}

{{- define "alert-broadcaster.pdb.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/* Connection settings --------------------------------------------------- */}}

{{/* Name of the Secret holding AMQP_URL and REDIS_URL. */}}
{{- define "alert-broadcaster.secretName" -}}
{{- default (include "alert-broadcaster.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* Keys of AMQP_URL and REDIS_URL in that Secret. */}}
{{- define "alert-broadcaster.amqpUrlKey" -}}
{{- if .Values.existingSecret }}{{ .Values.existingSecretKeys.amqpUrl }}{{ else }}AMQP_URL{{ end -}}
{{- end -}}
{{- define "alert-broadcaster.redisUrlKey" -}}
{{- if .Values.existingSecret }}{{ .Values.existingSecretKeys.redisUrl }}{{ else }}REDIS_URL{{ end -}}
{{- end -}}

{{- define "alert-broadcaster.amqpUrl" -}}
{{- if .Values.rabbitmq.enabled -}}
{{- $auth := .Values.rabbitmq.auth -}}
{{- printf "amqp://%s:%s@%s-rabbitmq:5672/%%2f" (urlquery $auth.username | replace "+" "%20") (urlquery $auth.password | replace "+" "%20") (include "alert-broadcaster.fullname" .) -}}
{{- else -}}
{{- required "set externalRabbitmq.url (or existingSecret, or rabbitmq.enabled=true)" .Values.externalRabbitmq.url -}}
{{- end -}}
{{- end -}}

{{- define "alert-broadcaster.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- $host := printf "%s-redis:6379" (include "alert-broadcaster.fullname" .) -}}
{{- if .Values.redis.auth.password -}}
{{- printf "redis://:%s@%s" (urlquery .Values.redis.auth.password | replace "+" "%20") $host -}}
{{- else -}}
{{- printf "redis://%s" $host -}}
{{- end -}}
{{- else -}}
{{- required "set externalRedis.url (or existingSecret, or redis.enabled=true)" .Values.externalRedis.url -}}
{{- end -}}
{{- end -}}

{{/* Which connection URLs a component needs. */}}
{{- define "alert-broadcaster.usesAmqp" -}}
{{- if has . (list "listener" "processor") }}true{{ end -}}
{{- end -}}
{{- define "alert-broadcaster.usesRedis" -}}
{{- if has . (list "processor" "notify") }}true{{ end -}}
{{- end -}}

{{/* Environment of a component's ConfigMap: call with (dict "root" $ "component" "listener"). */}}
{{- define "alert-broadcaster.configData" -}}
{{- $v := .root.Values -}}
{{- $c := index $v .component -}}
LISTEN_ADDR: {{ printf "0.0.0.0:%d" (int $c.port) | quote }}
LOG_FORMAT: {{ $v.config.logFormat | quote }}
RUST_LOG: {{ $v.config.rustLog | quote }}
SHUTDOWN_TIMEOUT_SECONDS: {{ $v.config.shutdownTimeoutSeconds | toString | quote }}
{{- if include "alert-broadcaster.usesAmqp" .component }}
AMQP_QUEUE: {{ $v.config.amqpQueue | quote }}
AMQP_QUEUE_TYPE: {{ $v.config.amqpQueueType | quote }}
AMQP_DELIVERY_LIMIT: {{ $v.config.amqpDeliveryLimit | toString | quote }}
{{- end }}
{{- if include "alert-broadcaster.usesRedis" .component }}
REDIS_PREFIX: {{ $v.config.redisPrefix | quote }}
{{- end }}
{{- if eq .component "listener" }}
MAX_BODY_BYTES: {{ $c.maxBodyBytes | int64 | toString | quote }}
MAX_BATCH: {{ $c.maxBatch | int64 | toString | quote }}
SOURCE_RATE_LIMIT: {{ $c.sourceRateLimit | toString | quote }}
{{- end }}
{{- if eq .component "notify" }}
TRUSTED_PROXIES: {{ $c.trustedProxies | quote }}
CLIENT_AUTH: {{ $c.auth.mode | quote }}
{{- with $c.auth.oidcIssuer }}
OIDC_ISSUER: {{ . | quote }}
{{- end }}
{{- with $c.auth.audience }}
JWT_AUDIENCE: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $k, $val := $c.extraEnv }}
{{ $k }}: {{ $val | toString | quote }}
{{- end }}
{{- end -}}

{{/* Scheduling shared by every pod: call with (dict "root" $ "component" "listener"). */}}
{{- define "alert-broadcaster.scheduling" -}}
{{- $v := .root.Values -}}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $v.topologySpread.topologyKeys }}
  - maxSkew: {{ $v.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "alert-broadcaster.selectorLabels" $ | nindent 8 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Refuse settings that would break graceful shutdown. */}}
{{- define "alert-broadcaster.validate" -}}
{{- $v := .Values -}}
{{- $drain := add (int $v.preStopSleepSeconds) (int $v.config.shutdownTimeoutSeconds) -}}
{{- if le (int $v.terminationGracePeriodSeconds) (int $drain) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + config.shutdownTimeoutSeconds (%d), or pods are killed mid-drain" (int $v.terminationGracePeriodSeconds) (int $drain)) -}}
{{- end -}}
{{- if not (has $v.config.amqpQueueType (list "quorum" "classic")) -}}
{{- fail "config.amqpQueueType must be quorum or classic" -}}
{{- end -}}
{{- if and $v.processor.keda.enabled (not (has $v.processor.keda.protocol (list "amqp" "http"))) -}}
{{- fail "processor.keda.protocol must be amqp or http" -}}
{{- end -}}
{{- end -}}

{{/* In-chart brokers ------------------------------------------------------ */}}

{{- define "alert-broadcaster.brokerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "alert-broadcaster.rabbitmq.conf" -}}
cluster_formation.peer_discovery_backend = k8s
cluster_partition_handling = pause_minority
default_queue_type = quorum
listeners.tcp.default = 5672
management.tcp.port = 15672
prometheus.tcp.port = 15692
log.console = true
log.console.level = info
log.file = false
vm_memory_high_watermark.relative = 0.6
disk_free_limit.absolute = 1GB
{{- with .Values.rabbitmq.extraConfig }}
{{ . }}
{{- end }}
{{- end -}}

{{- define "alert-broadcaster.redis.conf" -}}
port 6379
dir /data
protected-mode no
appendonly yes
appendfsync {{ .Values.redis.appendfsync }}
aof-use-rdb-preamble yes
# Alert state must never be evicted: refuse writes when full instead.
maxmemory-policy noeviction
{{- if .Values.redis.auth.password }}
include /etc/redis/auth.conf
{{- end }}
{{- with .Values.redis.extraConfig }}
{{ . }}
{{- end }}
{{- end -}}
