{{/*
The five services, in one place: every per-service template ranges over this list.
*/}}
{{- define "spoke.services" -}}
connection mapping dedupe export filtering
{{- end -}}

{{- define "spoke.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name prefix: <release>-spoke, or the release name alone when it already contains the chart
name. Kept to 50 characters so that "-<service>" still fits a 63-character DNS label.
*/}}
{{- define "spoke.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "spoke.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spoke.labels" -}}
helm.sh/chart: {{ include "spoke.chart" . }}
app.kubernetes.io/name: {{ include "spoke.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spoke
{{- end -}}

{{/* Selector labels of one service; call with (dict "root" $ "svc" "export"). */}}
{{- define "spoke.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spoke.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "spoke.componentLabels" -}}
{{ include "spoke.labels" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "spoke.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spoke.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spoke.image" -}}
{{- $img := .Values.global.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding a key: the specific one if set, else global.existingSecret. */}}
{{- define "spoke.secretOr" -}}
{{- $specific := index . 0 -}}
{{- $root := index . 1 -}}
{{- default $root.Values.global.existingSecret $specific -}}
{{- end -}}

{{- define "spoke.saslEnabled" -}}
{{- if hasPrefix "SASL" (upper .Values.global.kafka.securityProtocol) -}}true{{- end -}}
{{- end -}}

{{- define "spoke.rs256Enabled" -}}
{{- if .Values.global.auth.rs256.publicKeysSecret -}}true{{- end -}}
{{- end -}}

{{/*
Checks that need more than the JSON schema (cross-field rules); they fail the render with a
message naming the value to set.
*/}}
{{- define "spoke.validate" -}}
{{- $g := .Values.global -}}
{{- if not (or $g.database.host $g.database.existingSecret $g.existingSecret) -}}
{{- fail "database: set global.database.existingSecret (a Secret with the URL), global.database.host (+ passwordSecret), or global.existingSecret" -}}
{{- end -}}
{{- if and $g.database.host (not (include "spoke.secretOr" (list $g.database.passwordSecret .))) -}}
{{- fail "database: global.database.host is set but no Secret holds the password: set global.database.passwordSecret or global.existingSecret" -}}
{{- end -}}
{{- if include "spoke.saslEnabled" . -}}
{{- if not (and $g.kafka.sasl.mechanism $g.kafka.sasl.username) -}}
{{- fail (printf "kafka: securityProtocol %s needs global.kafka.sasl.mechanism and global.kafka.sasl.username" $g.kafka.securityProtocol) -}}
{{- end -}}
{{- if not (include "spoke.secretOr" (list $g.kafka.sasl.passwordSecret .)) -}}
{{- fail "kafka: SASL needs a password Secret: set global.kafka.sasl.passwordSecret or global.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if include "spoke.rs256Enabled" . -}}
{{- if not $g.auth.rs256.publicKeys -}}
{{- fail "auth: global.auth.rs256.publicKeysSecret is set; list the keys to mount in global.auth.rs256.publicKeys" -}}
{{- end -}}
{{- else if not (include "spoke.secretOr" (list $g.auth.existingSecret .)) -}}
{{- fail "auth: no JWT verification key: set global.auth.rs256.publicKeysSecret (production) or a Secret with jwt-hs256-secret (global.auth.existingSecret or global.existingSecret)" -}}
{{- end -}}
{{- range $svc := splitList " " (include "spoke.services" .) -}}
{{- $v := index $.Values $svc -}}
{{- if eq (int $v.grpcPort) (int $v.adminPort) -}}
{{- fail (printf "%s: grpcPort and adminPort are both %v; give each its own port" $svc $v.grpcPort) -}}
{{- end -}}
{{- if and $v.hpa.enabled (lt (int $v.hpa.maxReplicas) (int $v.hpa.minReplicas)) -}}
{{- fail (printf "%s.hpa: maxReplicas (%v) is below minReplicas (%v)" $svc $v.hpa.maxReplicas $v.hpa.minReplicas) -}}
{{- end -}}
{{- end -}}
{{- if and $g.grpcTls.enabled (not $g.grpcTls.secretName) -}}
{{- fail "grpcTls: enabled needs global.grpcTls.secretName (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- end -}}

{{- define "spoke.terminationGracePeriod" -}}
{{- $g := .Values.global -}}
{{- add $g.shutdownGraceSecs $g.preStopSleepSecs $g.terminationGraceMarginSecs -}}
{{- end -}}

{{/*
RS256 public key paths as the array syntax the config loader parses from one variable:
["/etc/spoke/jwt/public/a.pem","/etc/spoke/jwt/public/b.pem"].
*/}}
{{- define "spoke.rs256PublicKeyPaths" -}}
{{- $paths := list -}}
{{- range .Values.global.auth.rs256.publicKeys -}}
{{- $paths = append $paths (printf "/etc/spoke/jwt/public/%s" .) -}}
{{- end -}}
{{- $paths | toJson -}}
{{- end -}}
