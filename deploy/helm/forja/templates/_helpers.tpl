{{- define "forja.name" -}}{{ .Chart.Name }}{{- end -}}
{{- define "forja.fullname" -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "forja.labels" -}}
app.kubernetes.io/name: {{ include "forja.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "forja.selector" -}}
app.kubernetes.io/name: {{ include "forja.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}
{{- define "forja.databaseSecret" -}}{{ .Values.database.existingSecret | default (printf "%s-database" (include "forja.fullname" .)) }}{{- end -}}
{{- define "forja.image" -}}{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}{{- end -}}
{{/* The environment every forja container gets: the database, S3. */}}
{{- define "forja.env" -}}
- name: FORJA_DATABASE
  valueFrom:
    secretKeyRef: {name: {{ include "forja.databaseSecret" . }}, key: url}
{{- with .Values.artifacts }}
{{- if .endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ .endpoint | quote }}
{{- end }}
{{- if .region }}
- name: AWS_REGION
  value: {{ .region | quote }}
{{- end }}
{{- end }}
{{- end -}}
{{- define "forja.envFrom" -}}
{{- if .Values.artifacts.existingSecret }}
- secretRef: {name: {{ .Values.artifacts.existingSecret }}}
{{- end }}
{{- end -}}
