{{- define "detection-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "detection-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "detection-operator.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "detection-operator.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects carry the release namespace: two releases of the same name must not collide. */}}
{{- define "detection-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "detection-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "detection-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "detection-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "detection-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "detection-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "detection-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "detection-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Each object has one writer: several replicas without the Leases would write over each other. */}}
{{- define "detection-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicas: %d needs leaderElection.enabled: true (only the lease holder may evaluate and write)" (int .Values.replicas)) -}}
{{- end -}}
{{- if not (lt (int .Values.leaderElection.renewDeadlineSeconds) (int .Values.leaderElection.leaseDurationSeconds)) -}}
{{- fail "leaderElection.renewDeadlineSeconds must be less than leaderElection.leaseDurationSeconds" -}}
{{- end -}}
{{- if and (gt (int .Values.leaderElection.buckets) 1) (lt (int .Values.leaderElection.memberSlots) (int .Values.replicas)) -}}
{{- fail (printf "leaderElection.memberSlots (%d) must be at least replicas (%d): each replica needs a slot to be counted" (int .Values.leaderElection.memberSlots) (int .Values.replicas)) -}}
{{- end -}}
{{- end -}}
