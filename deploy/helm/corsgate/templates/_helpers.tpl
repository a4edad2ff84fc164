{{/* Names, labels and the pieces both Deployments share. */}}

{{- define "corsgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: at most 40 characters, so "-controller-webhook" still fits 63. */}}
{{- define "corsgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "corsgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "corsgate.labels" -}}
helm.sh/chart: {{ include "corsgate.chart" . }}
app.kubernetes.io/name: {{ include "corsgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: corsgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include "corsgate.selectorLabels" (list . "proxy"). */}}
{{- define "corsgate.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "corsgate.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "corsgate.componentLabels" -}}
{{ include "corsgate.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "corsgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "corsgate.controller.serviceAccountName" -}}
{{- default (printf "%s-controller" (include "corsgate.fullname" .)) .Values.controller.serviceAccount.name }}
{{- end }}

{{- define "corsgate.proxy.serviceAccountName" -}}
{{- default (printf "%s-proxy" (include "corsgate.fullname" .)) .Values.proxy.serviceAccount.name }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (the controller's or cert-manager's). */}}
{{- define "corsgate.webhook.secretName" -}}
{{- printf "%s-webhook-tls" (include "corsgate.fullname" .) }}
{{- end }}

{{/* Whether the controller manages the webhook certificate itself (Secret + caBundle). */}}
{{- define "corsgate.webhook.selfManaged" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) }}true{{- end }}
{{- end }}

{{/* Pod anti-affinity from a "soft" | "hard" | "none" setting, unless affinity is given.
     include "corsgate.affinity" (list . .Values.proxy "proxy") */}}
{{- define "corsgate.affinity" -}}
{{- $root := index . 0 -}}
{{- $cfg := index . 1 -}}
{{- $component := index . 2 -}}
{{- if $cfg.affinity }}
{{- toYaml $cfg.affinity }}
{{- else if eq $cfg.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "corsgate.selectorLabels" (list $root $component) | nindent 10 }}
{{- else if eq $cfg.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "corsgate.selectorLabels" (list $root $component) | nindent 12 }}
{{- end }}
{{- end }}

{{/* Environment both components share. */}}
{{- define "corsgate.commonEnv" -}}
- name: CORSGATE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}
