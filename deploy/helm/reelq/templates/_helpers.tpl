{{/* Labels of every object; "part" names the component. */}}
{{- define "reelq.labels" -}}
app.kubernetes.io/name: reelq-{{ .part }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: reelq
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels of a component's pods. */}}
{{- define "reelq.selector" -}}
app.kubernetes.io/name: reelq-{{ .part }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* A component's object name: <release>-<part>, or reelq-<part> for release "reelq". */}}
{{- define "reelq.name" -}}
{{- if eq .root.Release.Name "reelq" -}}
reelq-{{ .part }}
{{- else -}}
{{ printf "%s-reelq-%s" .root.Release.Name .part | trunc 63 | trimSuffix "-" }}
{{- end -}}
{{- end }}

{{- define "reelq.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The providers that run: those whose Secret is named. */}}
{{- define "reelq.enabledProviders" -}}
{{- $out := list -}}
{{- range $name, $p := .Values.providers -}}
{{- if $p.existingSecret -}}{{- $out = append $out $name -}}{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/* Pod and container security settings shared by every part. */}}
{{- define "reelq.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "reelq.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end }}
