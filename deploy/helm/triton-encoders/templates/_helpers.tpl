{{/* Names and labels shared by every object of the chart. */}}

{{- define "triton-encoders.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "triton-encoders.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "triton-encoders.selectorLabels" -}}
app.kubernetes.io/name: {{ include "triton-encoders.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "triton-encoders.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "triton-encoders.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "triton-encoders.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "triton-encoders.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret that holds the admin key: an existing one, or the one this chart generates. */}}
{{- define "triton-encoders.adminKeySecret" -}}
{{- default (printf "%s-admin-key" (include "triton-encoders.fullname" .)) .Values.adminKey.existingSecret -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "triton-encoders.imageRef" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/* Where Triton reads the model repository from. */}}
{{- define "triton-encoders.modelRepositoryPath" -}}
{{- if eq .Values.modelRepository.source "objectStore" -}}
{{- .Values.modelRepository.objectStore.url -}}
{{- else -}}
/models/repository
{{- end -}}
{{- end -}}

{{/* The seconds Kubernetes waits between the start of preStop and SIGKILL. */}}
{{- define "triton-encoders.terminationGracePeriodSeconds" -}}
{{- add .Values.shutdown.preStopSleepSeconds .Values.server.exitTimeoutSeconds .Values.shutdown.marginSeconds -}}
{{- end -}}

{{/* The custom metric the HPA asks for: the name the prometheus-adapter rule produces. */}}
{{- define "triton-encoders.scalingMetric" -}}
{{- $rules := .Files.Get "files/prometheus-adapter-rules.yaml" | fromYamlArray -}}
{{- (index $rules 0).name.as -}}
{{- end -}}

{{/* checkov skips shared by the pod-bearing objects, with their reasons. */}}
{{- define "triton-encoders.checkovPodSkips" -}}
checkov.io/skip1: CKV_K8S_40=The image's own user triton-server (UID 1000) owns its home and files; a UID above 10000 would run as a user the NGC image does not know
checkov.io/skip2: CKV_K8S_43=Images are pinned by release tags (NGC release, model version); set image.digest and modelRepository.image.digest to pin digests from your registry
checkov.io/skip3: CKV_K8S_15=Tags are immutable per release; Always would make every restart depend on the registry
checkov.io/skip4: CKV_K8S_35=tritonserver takes the admin key only as a command-line argument, expanded by Kubernetes from this environment variable
{{- if not .Values.networkPolicy.enabled }}
checkov.io/skip5: CKV2_K8S_6=The NetworkPolicy is optional (networkPolicy.enabled); which namespaces may call the server is the cluster owner's decision
{{- end }}
{{- end -}}

{{/* The server container's resources, used for both requests and limits. */}}
{{- define "triton-encoders.serverResources" -}}
cpu: {{ .Values.resources.cpu | quote }}
memory: {{ .Values.resources.memory | quote }}
ephemeral-storage: {{ .Values.resources.ephemeralStorage | quote }}
{{- if gt (int .Values.gpu.count) 0 }}
nvidia.com/gpu: {{ .Values.gpu.count }}
{{- end }}
{{- end -}}

{{/* Every container: non-root, no privilege escalation, no capabilities, read-only root. */}}
{{- define "triton-encoders.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* tritonserver's arguments. $(TRITON_ADMIN_KEY) is expanded by Kubernetes from the env. */}}
{{- define "triton-encoders.serverArgs" -}}
{{- $restricted := "model-repository,logging,trace,shared-memory:triton-admin-key=$(TRITON_ADMIN_KEY)" -}}
- --model-repository={{ include "triton-encoders.modelRepositoryPath" . }}
- --model-control-mode={{ .Values.server.modelControlMode }}
{{- if eq .Values.server.modelControlMode "explicit" }}
{{- range .Values.server.loadModels }}
- --load-model={{ . }}
{{- end }}
{{- end }}
- --strict-readiness=true
- --exit-timeout-secs={{ .Values.server.exitTimeoutSeconds }}
- --http-port={{ .Values.ports.http }}
- --grpc-port={{ .Values.ports.grpc }}
- --metrics-port={{ .Values.ports.metrics }}
- --allow-metrics=true
- --metrics-config=summary_latencies=true
- --http-max-input-size={{ int .Values.server.httpMaxInputSize }}
- --http-restricted-api={{ $restricted }}
- --grpc-restricted-protocol={{ $restricted }}
{{- range .Values.server.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Checks across values that values.schema.json cannot express. */}}
{{- define "triton-encoders.validate" -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail (printf "autoscaling.maxReplicas (%v) is below autoscaling.minReplicas (%v)" .Values.autoscaling.maxReplicas .Values.autoscaling.minReplicas) -}}
{{- end -}}
{{- if eq (add .Values.strategy.maxSurge .Values.strategy.maxUnavailable) 0 -}}
{{- fail "strategy.maxSurge and strategy.maxUnavailable are both 0: a rollout could never start; set maxSurge 1 (spare GPU) or maxUnavailable 1" -}}
{{- end -}}
{{- if and .Values.server.loadModels (ne .Values.server.modelControlMode "explicit") -}}
{{- fail "server.loadModels needs server.modelControlMode explicit (mode none loads every model of the repository)" -}}
{{- end -}}
{{- end -}}
