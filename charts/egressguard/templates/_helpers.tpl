{{/* Names and labels shared by every object of the release. */}}
{{- define "egressguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "egressguard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "egressguard.labels" -}}
{{ include "egressguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "egressguard.serviceAccountName" -}}
{{- default (include "egressguard.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "egressguard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The kubelet probes the agent's HTTP server from the node: loopback unless it listens on one address only. */}}
{{- define "egressguard.probeHost" -}}
{{- if has .Values.metrics.address (list "0.0.0.0" "127.0.0.1") -}}127.0.0.1
{{- else if has .Values.metrics.address (list "::" "::1") -}}::1
{{- else -}}{{ .Values.metrics.address }}
{{- end -}}
{{- end -}}

{{/* host:port for the agent's metrics.listen (IPv6 in brackets). */}}
{{- define "egressguard.metricsListen" -}}
{{- if contains ":" .Values.metrics.address -}}
{{- printf "[%s]:%d" .Values.metrics.address (int .Values.metrics.port) -}}
{{- else -}}
{{- printf "%s:%d" .Values.metrics.address (int .Values.metrics.port) -}}
{{- end -}}
{{- end -}}

{{/* node's flags for the agent: the V8 heap bounds of values agent.heap (bench/k8s-node.ts reads the same values). */}}
{{- define "egressguard.nodeOptions" -}}
--max-old-space-size={{ .Values.agent.heap.maxOldSpaceMiB }} --max-semi-space-size={{ .Values.agent.heap.maxSemiSpaceMiB }}
{{- end -}}
