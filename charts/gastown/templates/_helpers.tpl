{{/* The release's full name, at most 63 characters. */}}
{{- define "gastown.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels every object of the chart carries. */}}
{{- define "gastown.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gastown.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gastown
{{- end -}}

{{/* The labels that select the operator's pod. */}}
{{- define "gastown.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "gastown.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gastown.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gastown.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "gastown.agentImage" -}}
{{- printf "%s:%s" .Values.agentImage.repository (default .Chart.AppVersion .Values.agentImage.tag) -}}
{{- end -}}

{{/* The namespaced rules (gastown.kube.rbac.NAMESPACED; a test keeps the two equal). */}}
{{- define "gastown.namespacedRules" -}}
- apiGroups: [gastown.dev]
  resources: [rigs, polecats, convoys, mergequeues]
  verbs: [get, list, watch, patch]
- apiGroups: [gastown.dev]
  resources: [rigs/status, polecats/status, convoys/status, mergequeues/status]
  verbs: [get, patch]
- apiGroups: [gastown.dev]
  resources: [polecats]
  verbs: [create]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [create, patch, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [create]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, delete]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts, configmaps]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [resourcequotas]
  verbs: [create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, patch]
{{- end -}}

{{/* The replicas' leader Lease: its name, and the rules on it (gastown.kube.rbac.LEADER). */}}
{{- define "gastown.leaseName" -}}
{{- include "gastown.fullname" . -}}
{{- end -}}

{{- define "gastown.leaderRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "gastown.leaseName" . }}]
  verbs: [get, update, delete]
{{- end -}}

{{/* The cluster-scoped rules (gastown.kube.rbac.CLUSTER). */}}
{{- define "gastown.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end -}}

{{/* The pod's affinity: the values' own, with the replicas spread by hostname (podAntiAffinity)
unless the values' affinity has a podAntiAffinity of its own. */}}
{{- define "gastown.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "gastown.selectorLabels" . | fromYaml)) -}}
{{- if and (gt (int .Values.replicas) 1) (not (hasKey $affinity "podAntiAffinity")) -}}
{{- if eq .Values.podAntiAffinity "preferred" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- else if eq .Values.podAntiAffinity "required" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- end -}}
{{- end -}}
{{- if $affinity }}{{ toYaml $affinity }}{{ end -}}
{{- end -}}

{{/* What `gt operator uninstall` calls (gastown.kube.rbac.UNINSTALL; a test keeps the two equal). */}}
{{- define "gastown.uninstallRules" -}}
- apiGroups: [gastown.dev]
  resources: [rigs, polecats, convoys, mergequeues]
  verbs: [list, patch]
- apiGroups: [batch]
  resources: [cronjobs, jobs]
  verbs: [list, delete]
- apiGroups: [""]
  resources: [serviceaccounts, resourcequotas, configmaps, persistentvolumeclaims]
  verbs: [list, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [list, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, delete]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [list, delete]
{{- end -}}
