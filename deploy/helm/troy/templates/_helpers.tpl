{{/* The release's name for troy's objects, at most 63 characters. */}}
{{- define "troy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "troy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The image, pinned: by digest when given, else by tag; an empty or moving tag is refused. */}}
{{- define "troy.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- $tag := required "image.tag: expected a release such as 0.1.0 (or set image.digest)" .Values.image.tag -}}
{{- if eq (toString $tag) "latest" -}}
{{- fail "image.tag latest: expected a pinned release such as 0.1.0 (or set image.digest)" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository (toString $tag) -}}
{{- end -}}
{{- end -}}

{{/* The NATS URL: nats.url, else the dependency's Service. */}}
{{- define "troy.natsURL" -}}
{{- if .Values.nats.url -}}
{{- .Values.nats.url -}}
{{- else if .Values.nats.enabled -}}
{{- printf "nats://%s-nats:4222" .Release.Name -}}
{{- else -}}
{{- fail "nats.url: expected the URL of an existing NATS cluster, such as nats://nats:4222 (or set nats.enabled=true to install the NATS chart)" -}}
{{- end -}}
{{- end -}}

{{- define "troy.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "troy.fullname" .)) .Values.policy.existingConfigMap -}}
{{- end -}}

{{- define "troy.clickhouseSecret" -}}
{{- default (printf "%s-clickhouse" (include "troy.fullname" .)) .Values.clickhouse.existingSecret -}}
{{- end -}}

{{/*
One Deployment running `troyctl serve --only <only>`. Called with a dict: root (the chart's
context), name (the Deployment's suffix), only (the component), c (its values), args
(further serve flags), port (a container port to publish, or 0).
*/}}
{{- define "troy.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $c := .c -}}
{{- $resources := default $v.defaults.resources $c.resources -}}
{{- $name := printf "%s-%s" (include "troy.fullname" $root) .name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "troy.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  replicas: {{ $c.replicas | default 1 }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ $root.Release.Name }}
      app.kubernetes.io/component: {{ .name }}
  template:
    metadata:
      labels:
        {{- include "troy.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .name }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $v.metricsPort | quote }}
    spec:
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: troy
          image: {{ include "troy.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - serve
            - --only={{ .only }}
            - --nats={{ include "troy.natsURL" $root }}
            - --creds=/etc/troy/nats/{{ $v.credentials.key }}
            - --policy=/etc/troy/policy/{{ $v.policy.key }}
            - --metrics=0.0.0.0:{{ $v.metricsPort }}
            - --data-dir=/var/lib/troy
            {{- if $v.streamReplicas }}
            - --replicas={{ $v.streamReplicas }}
            {{- end }}
            {{- range .args }}
            - {{ . }}
            {{- end }}
            {{- range (default $v.defaults.extraArgs $c.extraArgs) }}
            - {{ . }}
            {{- end }}
          {{- if .env }}
          env:
            {{- .env | nindent 12 }}
          {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $v.metricsPort }}
            {{- if .port }}
            - name: http
              containerPort: {{ .port }}
            {{- end }}
          {{- $probe := $v.probe }}
          {{- range $kind := list "liveness" "readiness" }}
          {{ $kind }}Probe:
            {{- if eq $probe.type "exec" }}
            exec:
              command: ["/usr/local/bin/troyctl", "health", "--url", "http://127.0.0.1:{{ $v.metricsPort }}/healthz", "--timeout", "{{ $probe.timeoutSeconds }}s"]
            {{- else if eq $probe.type "http" }}
            httpGet:
              path: /healthz
              port: metrics
            {{- else }}
            {{- fail (printf "probe.type %q: expected http or exec" $probe.type) }}
            {{- end }}
            {{- if eq $kind "liveness" }}
            initialDelaySeconds: {{ $probe.initialDelaySeconds }}
            {{- end }}
            periodSeconds: {{ $probe.periodSeconds }}
            timeoutSeconds: {{ $probe.timeoutSeconds }}
            failureThreshold: {{ $probe.failureThreshold }}
          {{- end }}
          resources:
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: nats-creds, mountPath: /etc/troy/nats, readOnly: true}
            - {name: policy, mountPath: /etc/troy/policy, readOnly: true}
            - {name: data, mountPath: /var/lib/troy}
            - {name: tmp, mountPath: /tmp}
            {{- if .mounts }}
            {{- .mounts | nindent 12 }}
            {{- end }}
      volumes:
        - name: nats-creds
          secret:
            secretName: {{ $v.credentials.secretName }}
            items: [{key: {{ $v.credentials.key }}, path: {{ $v.credentials.key }}}]
        - name: policy
          configMap:
            name: {{ include "troy.policyConfigMap" $root }}
        - name: data
          {{- if $c.reportsClaim }}
          persistentVolumeClaim:
            claimName: {{ $c.reportsClaim }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        - name: tmp
          emptyDir: {}
        {{- if .volumes }}
        {{- .volumes | nindent 8 }}
        {{- end }}
      {{- with (default $v.defaults.nodeSelector $c.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $v.defaults.tolerations $c.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $v.defaults.affinity $c.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
