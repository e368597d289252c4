{{/* Names and labels. */}}
{{- define "archway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "archway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "archway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "archway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "archway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "archway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "archway.mountSelectorLabels" -}}
app.kubernetes.io/name: {{ include "archway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mount
{{- end }}

{{- define "archway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "archway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "archway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Whether the catalogue is PostgreSQL. */}}
{{- define "archway.postgres" -}}
{{- if or .Values.catalog.postgres.url .Values.catalog.postgres.existingSecret }}true{{ end }}
{{- end }}

{{/* The Secret holding the PostgreSQL URL, and its key. */}}
{{- define "archway.postgresSecret" -}}
{{- default (printf "%s-catalog" (include "archway.fullname" .)) .Values.catalog.postgres.existingSecret }}
{{- end }}
{{- define "archway.postgresSecretKey" -}}
{{- if .Values.catalog.postgres.existingSecret }}{{ .Values.catalog.postgres.existingSecretKey }}{{ else }}postgres-url{{ end }}
{{- end }}

{{/* Whether a secret key is given (else, on SQLite, the gateway makes one in /data). */}}
{{- define "archway.secretKeyGiven" -}}
{{- if or .Values.catalog.secretKey .Values.catalog.existingSecret }}true{{ end }}
{{- end }}
{{- define "archway.secretKeySecret" -}}
{{- default (printf "%s-catalog" (include "archway.fullname" .)) .Values.catalog.existingSecret }}
{{- end }}
{{- define "archway.secretKeySecretKey" -}}
{{- if .Values.catalog.existingSecret }}{{ .Values.catalog.existingSecretKey }}{{ else }}secret-key{{ end }}
{{- end }}

{{/*
Refuses shapes that cannot work, naming the value to change. Included by every template that
depends on them, so `helm template` and `helm install` fail before anything is made.
*/}}
{{- define "archway.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- $scaled := or (gt $replicas 1) .Values.autoscaling.enabled }}
{{- $why := ternary (printf "replicaCount is %d" $replicas) "autoscaling.enabled is true" (gt $replicas 1) }}
{{- if lt $replicas 0 }}
{{- fail (printf "replicaCount is %d; it must be 0 or more" $replicas) }}
{{- end }}
{{- if and $scaled (not (include "archway.postgres" .)) }}
{{- fail (printf "%s: several replicas need one shared catalogue, but the catalogue is SQLite in each replica's own data directory. Set catalog.postgres.url (or catalog.postgres.existingSecret), or keep replicaCount: 1 without autoscaling." $why) }}
{{- end }}
{{- if and $scaled (not .Values.workspaces.backend) }}
{{- fail (printf "%s: workspaces would live in each replica's own data directory, and a file written through one replica would be missing on the others. Set workspaces.backend to a backend from `config` that every replica reaches (an S3 bucket, a shared file system)." $why) }}
{{- end }}
{{- if and (include "archway.postgres" .) (not (include "archway.secretKeyGiven" .)) }}
{{- fail "catalog.postgres is set but catalog.secretKey and catalog.existingSecret are empty: every replica must seal S3 secrets with the same key. Set catalog.secretKey to 64 hexadecimal digits (openssl rand -hex 32) or name a Secret in catalog.existingSecret." }}
{{- end }}
{{- if and .Values.catalog.secretKey (not (regexMatch "^[0-9a-fA-F]{64}$" .Values.catalog.secretKey)) }}
{{- fail "catalog.secretKey must be 64 hexadecimal digits (openssl rand -hex 32)" }}
{{- end }}
{{- if and .Values.catalog.postgres.url (not (regexMatch "^postgres(ql)?://" .Values.catalog.postgres.url)) }}
{{- fail "catalog.postgres.url must begin with postgres:// or postgresql://" }}
{{- end }}
{{- if not (has .Values.cache.disk.type (list "emptyDir" "ephemeral")) }}
{{- fail (printf "cache.disk.type is %q; it must be emptyDir or ephemeral" .Values.cache.disk.type) }}
{{- end }}
{{- if and .Values.mount.daemonset.enabled (not .Values.mount.daemonset.existingSecret) }}
{{- fail "mount.daemonset.enabled needs mount.daemonset.existingSecret: a Secret with aws-access-key-id, aws-secret-access-key and api-token of the user the mount acts as" }}
{{- end }}
{{- end }}
