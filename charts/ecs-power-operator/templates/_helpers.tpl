{{/*
Names, labels and small computed values shared by every template of the chart.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "ecs-power-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every resource: fullnameOverride, or the release name when it already
contains the chart name, or "<release>-<chart>". Truncated to 63 characters (DNS label limit).
*/}}
{{- define "ecs-power-operator.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "ecs-power-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "ecs-power-operator.labels" -}}
helm.sh/chart: {{ include "ecs-power-operator.chart" . }}
{{ include "ecs-power-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ecs-power-operator
{{- end }}

{{/* Labels that select the operator pod (immutable in the Deployment selector). */}}
{{- define "ecs-power-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecs-power-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "ecs-power-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecs-power-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "ecs-power-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The RBAC rules the operator needs on the namespace(s) it watches (see docs/install.md "RBAC").
Least privilege, exactly the requests the operator makes (tests/chart/test_install_on_sandbox.py
runs it behind an authorizer that enforces these rules):
- its resources: list + watch (kube-runtime's watcher), get;
- their status: a merge patch on /status (never a PUT, never the spec), get;
- EcsPowerSchedules: list + watch (the watch that re-queues the resources following a schedule),
  and a merge patch on their /status (state, next transition, instances); never the spec;
- Secrets: list + watch (the watch that re-queues resources when a referenced Secret changes),
  get (the Secret a resource's credentialsSecretRef names); never a write;
- Events: kube-runtime's Recorder writes events.k8s.io/v1 Events only: create, and patch to count
  a repeated one. No core ("") events.
*/}}
{{- define "ecs-power-operator.watchRules" -}}
- apiGroups: ["ecspower.dev"]
  resources: ["ecsinstancepowers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ecspower.dev"]
  resources: ["ecsinstancepowers/status"]
  verbs: ["get", "patch"]
- apiGroups: ["ecspower.dev"]
  resources: ["ecspowerschedules"]
  verbs: ["list", "watch"]
- apiGroups: ["ecspower.dev"]
  resources: ["ecspowerschedules/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Checks across values that the JSON schema cannot express clearly; fails the render with a message
that says what to change.
*/}}
{{- define "ecs-power-operator.validateValues" -}}
{{- if .Values.rrsa.manual.enabled }}
{{- if .Values.rrsa.roleName }}
{{- fail "rrsa.roleName (ACK's pod-identity webhook injects RRSA) and rrsa.manual.enabled (the chart injects RRSA itself) exclude each other: set only one" }}
{{- end }}
{{- if not (and .Values.rrsa.manual.roleArn .Values.rrsa.manual.oidcProviderArn) }}
{{- fail "rrsa.manual.enabled needs rrsa.manual.roleArn and rrsa.manual.oidcProviderArn" }}
{{- end }}
{{- if and .Values.rrsa.manual.vpcEndpoint (not .Values.rrsa.manual.stsRegion) }}
{{- fail "rrsa.manual.vpcEndpoint needs rrsa.manual.stsRegion: the VPC endpoint is regional (sts-vpc.<region>.aliyuncs.com)" }}
{{- end }}
{{- else if or .Values.rrsa.manual.stsRegion .Values.rrsa.manual.vpcEndpoint }}
{{- fail "rrsa.manual.stsRegion and rrsa.manual.vpcEndpoint apply only with rrsa.manual.enabled=true (with rrsa.roleName, ACK's webhook sets the STS endpoint)" }}
{{- end }}
{{- end }}

{{/*
Whether the operator elects a leader: always with more than one replica, or when asked.
*/}}
{{- define "ecs-power-operator.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}
