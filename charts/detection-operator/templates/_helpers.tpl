{{- define "detection-operator.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "detection-operator.serviceAccountName" -}}
{{- default (include "detection-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "detection-operator.labels" -}}
app.kubernetes.io/name: detection-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
