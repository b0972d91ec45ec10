{{/* The objects' name: fullnameOverride, else `llmux` for a release named llmux, else <release>-llmux. */}}
{{- define "llmux.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if eq .Release.Name $name -}}
{{- $name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llmux.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object; the selector uses only app.kubernetes.io/name and instance. */}}
{{- define "llmux.labels" -}}
app.kubernetes.io/name: {{ include "llmux.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "llmux.selector" -}}
app.kubernetes.io/name: {{ include "llmux.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* One TOML `key = value` line per entry of a map (keys quoted unless bare); values are JSON,
which TOML reads the same for strings, numbers, booleans and arrays of them. */}}
{{- define "llmux.tomlPairs" -}}
{{- $lines := list -}}
{{- range $k, $v := . -}}
{{- $key := ternary $k (toJson $k) (regexMatch "^[A-Za-z0-9_-]+$" $k) -}}
{{- $lines = append $lines (printf "%s = %s" $key (toJson $v)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}
