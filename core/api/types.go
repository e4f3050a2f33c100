package api

// This file holds the resource kinds. Field names and shapes follow
// Kubernetes where a Kubernetes user would look for them.

// ResourceName names a countable resource: cpu, memory or pods.
type ResourceName string

// The resources Paddock accounts for.
const (
	ResourceCPU    ResourceName = "cpu"
	ResourceMemory ResourceName = "memory"
	ResourcePods   ResourceName = "pods"
)

// ResourceList maps resources to amounts: {"cpu": "250m", "memory": "64Mi"}.
type ResourceList map[ResourceName]Quantity

// ---- Tenant ----------------------------------------------------------------

// IsolationLevel says how strongly a tenant's pods are kept apart from
// everything else.
type IsolationLevel string

// Isolation levels.
const (
	// IsolationShared tenants may run on any runtime class they are allowed.
	IsolationShared IsolationLevel = "shared"
	// IsolationSandboxed tenants run only on runtime classes whose isolation
	// class is stronger than Linux namespaces (gVisor, VMs).
	IsolationSandboxed IsolationLevel = "sandboxed"
)

// Tenant is the unit of isolation: what a namespace is in Kubernetes, plus
// policy. It is cluster-scoped.
type Tenant struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     TenantSpec   `json:"spec"`
	Status   TenantStatus `json:"status,omitzero"`
}

// TenantSpec is a tenant's policy.
type TenantSpec struct {
	// Isolation is shared (default) or sandboxed.
	Isolation IsolationLevel `json:"isolation,omitempty"`
	// Quota caps what the tenant's pods may request; nil means no cap.
	Quota *TenantQuota `json:"quota,omitempty"`
	// AllowedRuntimeClasses lists the runtime classes the tenant's pods may
	// use; empty means any class its isolation level permits.
	AllowedRuntimeClasses []string `json:"allowedRuntimeClasses,omitempty"`
	// DefaultRuntimeClass is filled into pods that name none. Defaults to
	// "runc" for shared tenants and "gvisor" for sandboxed ones.
	DefaultRuntimeClass string `json:"defaultRuntimeClass,omitempty"`
	// NodeSelector pins every pod of the tenant to matching nodes
	// (dedicated nodes). It is merged into each pod's nodeSelector.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// TenantQuota caps a tenant's pods. A nil field is not capped.
type TenantQuota struct {
	Pods   *int64    `json:"pods,omitempty"`
	CPU    *Quantity `json:"cpu,omitempty"`
	Memory *Quantity `json:"memory,omitempty"`
}

// TenantStatus reports what the tenant uses.
type TenantStatus struct {
	// Used counts the tenant's pods that have not finished and the sum of
	// their requests. It is maintained by the API server in the same
	// transaction that creates or deletes a pod.
	Used TenantUsage `json:"used,omitzero"`
}

// TenantUsage is what a tenant's live pods take.
type TenantUsage struct {
	Pods   int64    `json:"pods"`
	CPU    Quantity `json:"cpu"`
	Memory Quantity `json:"memory"`
}

// ---- Token -----------------------------------------------------------------

// Role is what a credential may do.
type Role string

// Roles.
const (
	RoleClusterAdmin Role = "cluster-admin" // everything
	RoleAdmin        Role = "admin"         // everything inside one tenant, including its tokens
	RoleEdit         Role = "edit"          // read and write a tenant's objects
	RoleView         Role = "view"          // read a tenant's objects except secrets
	RoleNode         Role = "node"          // a node agent: its Node, its pods and their status
)

// Token is an API credential. The secret is shown once, in the answer to
// the create; the server stores only its hash. Tokens are cluster-scoped
// objects named by the token's public id.
type Token struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     TokenSpec   `json:"spec"`
	Status   TokenStatus `json:"status,omitzero"`
}

// TokenSpec binds a token to a role and, for tenant roles, a tenant; for
// the node role, a node.
type TokenSpec struct {
	Role        Role   `json:"role"`
	Tenant      string `json:"tenant,omitempty"`
	Node        string `json:"node,omitempty"`
	Description string `json:"description,omitempty"`
	// ExpirationTimestamp, when set, ends the token's validity.
	ExpirationTimestamp *Time `json:"expirationTimestamp,omitempty"`
}

// TokenStatus carries the bearer token once, in the create answer.
type TokenStatus struct {
	// Token is the bearer token "ID.SECRET". It is never stored and appears
	// only in the answer to the request that created the token.
	Token string `json:"token,omitempty"`
	// SecretHash is the SHA-256 of the secret, hex-encoded. It is stored and
	// never returned by the API.
	SecretHash string `json:"secretHash,omitempty"`
}

// ---- Node and RuntimeClass -------------------------------------------------

// Node is a machine that runs pods. It is cluster-scoped.
type Node struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     NodeSpec   `json:"spec"`
	Status   NodeStatus `json:"status,omitzero"`
}

// NodeSpec is what operators and the control plane set on a node.
type NodeSpec struct {
	Unschedulable bool    `json:"unschedulable,omitempty"`
	Taints        []Taint `json:"taints,omitempty"`
	// PodCIDR is the range this node's pod IPs come from.
	PodCIDR string `json:"podCIDR,omitempty"`
}

// TaintEffect is what a taint does to pods that do not tolerate it.
type TaintEffect string

// Taint effects.
const (
	TaintNoSchedule       TaintEffect = "NoSchedule"
	TaintPreferNoSchedule TaintEffect = "PreferNoSchedule"
	TaintNoExecute        TaintEffect = "NoExecute"
)

// Taint repels pods that do not tolerate it.
type Taint struct {
	Key    string      `json:"key"`
	Value  string      `json:"value,omitempty"`
	Effect TaintEffect `json:"effect"`
}

// NodeStatus is what the node agent reports.
type NodeStatus struct {
	Capacity    ResourceList   `json:"capacity,omitempty"`
	Allocatable ResourceList   `json:"allocatable,omitempty"`
	Conditions  []Condition    `json:"conditions,omitempty"`
	Addresses   []NodeAddress  `json:"addresses,omitempty"`
	NodeInfo    NodeSystemInfo `json:"nodeInfo,omitzero"`
	// RuntimeClasses lists the runtime classes this node's plugins offer.
	RuntimeClasses []string `json:"runtimeClasses,omitempty"`
	// DaemonEndpoint is where the node's agent serves container logs and
	// exec to the API server.
	DaemonEndpoint NodeDaemonEndpoint `json:"daemonEndpoint,omitzero"`
}

// NodeDaemonEndpoint is the node agent's stream endpoint: HTTPS on the
// node's InternalIP address at Port, with a self-signed certificate whose
// SHA-256 fingerprint (lower-case hex of the DER) is CertSHA256. Only the
// API server may use it; the agent refuses every other client.
type NodeDaemonEndpoint struct {
	Port       int32  `json:"port,omitempty"`
	CertSHA256 string `json:"certSHA256,omitempty"`
}

// NodeAddress is one address of a node.
type NodeAddress struct {
	Type    string `json:"type"` // InternalIP, Hostname
	Address string `json:"address"`
}

// NodeSystemInfo describes the node's software.
type NodeSystemInfo struct {
	AgentVersion    string `json:"agentVersion,omitempty"`
	KernelVersion   string `json:"kernelVersion,omitempty"`
	OperatingSystem string `json:"operatingSystem,omitempty"`
	Architecture    string `json:"architecture,omitempty"`
}

// Condition is a Kubernetes-style condition (Ready, PodScheduled, ...).
type Condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"` // True, False, Unknown
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	LastHeartbeatTime  *Time  `json:"lastHeartbeatTime,omitempty"`
	LastTransitionTime *Time  `json:"lastTransitionTime,omitempty"`
}

// IsolationClass is how a runtime separates a workload from the host.
type IsolationClass string

// Isolation classes, weakest first.
const (
	IsolationNamespace       IsolationClass = "namespace"        // Linux namespaces and cgroups (runc)
	IsolationUserspaceKernel IsolationClass = "userspace-kernel" // a kernel in user space (gVisor)
	IsolationVM              IsolationClass = "vm"               // a virtual machine
)

// RuntimeClass maps a name pods use to a runtime plugin and handler. It is
// cluster-scoped.
type RuntimeClass struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     RuntimeClassSpec `json:"spec"`
}

// RuntimeClassSpec names the plugin that runs the class.
type RuntimeClassSpec struct {
	// Plugin is the runtime plugin's name (runc, runsc, containerd).
	Plugin string `json:"plugin"`
	// Handler selects a configuration inside the plugin (containerd's
	// runc or runsc shim); empty for plugins with one.
	Handler string `json:"handler,omitempty"`
	// Isolation is the class's isolation class.
	Isolation IsolationClass `json:"isolation"`
}

// ---- Pod -------------------------------------------------------------------

// RestartPolicy says when the agent restarts a pod's containers.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways    RestartPolicy = "Always"
	RestartOnFailure RestartPolicy = "OnFailure"
	RestartNever     RestartPolicy = "Never"
)

// PullPolicy says when the agent pulls a container's image.
type PullPolicy string

// Pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// Pod is one or more containers that share a sandbox, a network namespace
// and a lifecycle.
type Pod struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     PodSpec    `json:"spec"`
	Status   PodStatus  `json:"status,omitzero"`
}

// PodSpec is what a pod should run and where.
type PodSpec struct {
	Containers       []Container       `json:"containers"`
	RestartPolicy    RestartPolicy     `json:"restartPolicy,omitempty"`
	RuntimeClassName string            `json:"runtimeClassName,omitempty"`
	NodeSelector     map[string]string `json:"nodeSelector,omitempty"`
	// NodeName is set by the scheduler when it binds the pod.
	NodeName    string       `json:"nodeName,omitempty"`
	Tolerations []Toleration `json:"tolerations,omitempty"`
	// TerminationGracePeriodSeconds is how long containers get between
	// SIGTERM and SIGKILL. Defaults to 30.
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
	Hostname                      string `json:"hostname,omitempty"`
	// HostNetwork, HostPID and HostIPC ask to share the node's network,
	// process and IPC namespaces. The API server refuses them for every
	// pod: they would give a tenant the node. They exist so that a
	// manifest asking for them is refused by name, as Kubernetes users
	// expect, rather than as an unknown field.
	HostNetwork bool `json:"hostNetwork,omitempty"`
	HostPID     bool `json:"hostPID,omitempty"`
	HostIPC     bool `json:"hostIPC,omitempty"`
	// Volumes are storage the pod's containers mount by name through
	// volumeMounts.
	Volumes []Volume `json:"volumes,omitempty"`
}

// Volume is storage a pod's containers may mount. Exactly one source is
// set.
type Volume struct {
	Name string `json:"name"`
	// HostPath is a file or directory of the node. The API server refuses
	// it for every pod: it reaches around the container's root.
	HostPath *HostPathVolumeSource `json:"hostPath,omitempty"`
	// EmptyDir is a directory that starts empty and lives as long as the
	// pod.
	EmptyDir *EmptyDirVolumeSource `json:"emptyDir,omitempty"`
}

// HostPathVolumeSource names a path on the node.
type HostPathVolumeSource struct {
	Path string `json:"path"`
}

// EmptyDirVolumeSource is a pod-lived scratch directory; it has no
// settings yet.
type EmptyDirVolumeSource struct{}

// VolumeMount mounts one of the pod's volumes into a container.
type VolumeMount struct {
	// Name is the name of a volume of the pod.
	Name string `json:"name"`
	// MountPath is the absolute path in the container.
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// Capability is a Linux capability without its CAP_ prefix: NET_ADMIN.
type Capability string

// Capabilities adds to and drops from a container's default capability
// set.
type Capabilities struct {
	Add  []Capability `json:"add,omitempty"`
	Drop []Capability `json:"drop,omitempty"`
}

// SecurityContext is what privileges a container's processes run with.
// Each field left empty keeps the runtime's safe default: unprivileged,
// no privilege escalation (no_new_privs), the default capability set, the
// image's user and a writable root filesystem. The API server refuses
// what would weaken that for a tenant's pod (docs/api.md, "Pod security").
type SecurityContext struct {
	Privileged               *bool         `json:"privileged,omitempty"`
	AllowPrivilegeEscalation *bool         `json:"allowPrivilegeEscalation,omitempty"`
	Capabilities             *Capabilities `json:"capabilities,omitempty"`
	RunAsUser                *int64        `json:"runAsUser,omitempty"`
	RunAsNonRoot             *bool         `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool         `json:"readOnlyRootFilesystem,omitempty"`
}

// Container is one process tree of a pod.
type Container struct {
	Name            string               `json:"name"`
	Image           string               `json:"image"`
	ImagePullPolicy PullPolicy           `json:"imagePullPolicy,omitempty"`
	Command         []string             `json:"command,omitempty"`
	Args            []string             `json:"args,omitempty"`
	Env             []EnvVar             `json:"env,omitempty"`
	WorkingDir      string               `json:"workingDir,omitempty"`
	Ports           []ContainerPort      `json:"ports,omitempty"`
	Resources       ResourceRequirements `json:"resources,omitzero"`
	LivenessProbe   *Probe               `json:"livenessProbe,omitempty"`
	ReadinessProbe  *Probe               `json:"readinessProbe,omitempty"`
	TTY             bool                 `json:"tty,omitempty"`
	Stdin           bool                 `json:"stdin,omitempty"`
	VolumeMounts    []VolumeMount        `json:"volumeMounts,omitempty"`
	SecurityContext *SecurityContext     `json:"securityContext,omitempty"`
}

// EnvVar is one environment variable, given literally or read from a
// secret or config map of the same tenant.
type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// EnvVarSource names where an environment variable's value comes from.
type EnvVarSource struct {
	SecretKeyRef    *KeySelector `json:"secretKeyRef,omitempty"`
	ConfigMapKeyRef *KeySelector `json:"configMapKeyRef,omitempty"`
}

// KeySelector names one key of a secret or config map.
type KeySelector struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// Protocol is a transport protocol.
type Protocol string

// Protocols.
const (
	ProtocolTCP Protocol = "TCP"
	ProtocolUDP Protocol = "UDP"
)

// ContainerPort is a port a container listens on.
type ContainerPort struct {
	Name          string   `json:"name,omitempty"`
	ContainerPort int32    `json:"containerPort"`
	HostPort      int32    `json:"hostPort,omitempty"`
	Protocol      Protocol `json:"protocol,omitempty"`
}

// ResourceRequirements are what a container asks for (requests, used for
// scheduling and quota) and may not exceed (limits, enforced by cgroups).
type ResourceRequirements struct {
	Requests ResourceList `json:"requests,omitempty"`
	Limits   ResourceList `json:"limits,omitempty"`
}

// Probe checks a container's health.
type Probe struct {
	Exec                *ExecAction      `json:"exec,omitempty"`
	HTTPGet             *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket           *TCPSocketAction `json:"tcpSocket,omitempty"`
	InitialDelaySeconds int32            `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int32            `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int32            `json:"timeoutSeconds,omitempty"`
	SuccessThreshold    int32            `json:"successThreshold,omitempty"`
	FailureThreshold    int32            `json:"failureThreshold,omitempty"`
}

// ExecAction runs a command in the container; exit 0 is healthy.
type ExecAction struct {
	Command []string `json:"command"`
}

// HTTPGetAction asks the pod's IP over HTTP; 200-399 is healthy.
type HTTPGetAction struct {
	Path   string `json:"path,omitempty"`
	Port   int32  `json:"port"`
	Scheme string `json:"scheme,omitempty"` // HTTP (default) or HTTPS
}

// TCPSocketAction opens a TCP connection to the pod's IP.
type TCPSocketAction struct {
	Port int32 `json:"port"`
}

// TolerationOperator compares a toleration with a taint.
type TolerationOperator string

// Toleration operators.
const (
	TolerationEqual  TolerationOperator = "Equal"
	TolerationExists TolerationOperator = "Exists"
)

// Toleration lets a pod run on a node with a matching taint.
type Toleration struct {
	Key      string             `json:"key,omitempty"`
	Operator TolerationOperator `json:"operator,omitempty"`
	Value    string             `json:"value,omitempty"`
	Effect   TaintEffect        `json:"effect,omitempty"`
}

// PodPhase is where a pod is in its life.
type PodPhase string

// Pod phases.
const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
	PodUnknown   PodPhase = "Unknown"
)

// PodStatus is what the node agent and scheduler report about a pod.
type PodStatus struct {
	Phase             PodPhase          `json:"phase,omitempty"`
	Conditions        []Condition       `json:"conditions,omitempty"`
	Reason            string            `json:"reason,omitempty"`
	Message           string            `json:"message,omitempty"`
	HostIP            string            `json:"hostIP,omitempty"`
	PodIP             string            `json:"podIP,omitempty"`
	StartTime         *Time             `json:"startTime,omitempty"`
	ContainerStatuses []ContainerStatus `json:"containerStatuses,omitempty"`
}

// ContainerStatus is the state of one container.
type ContainerStatus struct {
	Name                 string         `json:"name"`
	State                ContainerState `json:"state,omitzero"`
	LastTerminationState ContainerState `json:"lastState,omitzero"`
	Ready                bool           `json:"ready"`
	RestartCount         int32          `json:"restartCount"`
	Image                string         `json:"image,omitempty"`
	ImageID              string         `json:"imageID,omitempty"`
	ContainerID          string         `json:"containerID,omitempty"`
}

// ContainerState holds exactly one of its fields.
type ContainerState struct {
	Waiting    *ContainerStateWaiting    `json:"waiting,omitempty"`
	Running    *ContainerStateRunning    `json:"running,omitempty"`
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

// ContainerStateWaiting says why a container is not running yet.
type ContainerStateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// ContainerStateRunning says since when a container runs.
type ContainerStateRunning struct {
	StartedAt *Time `json:"startedAt,omitempty"`
}

// ContainerStateTerminated says how a container ended.
type ContainerStateTerminated struct {
	ExitCode   int32  `json:"exitCode"`
	Signal     int32  `json:"signal,omitempty"`
	Reason     string `json:"reason,omitempty"` // Completed, Error, OOMKilled
	Message    string `json:"message,omitempty"`
	StartedAt  *Time  `json:"startedAt,omitempty"`
	FinishedAt *Time  `json:"finishedAt,omitempty"`
}

// ---- Deployment and ReplicaSet ---------------------------------------------

// LabelSelector selects objects by their labels.
type LabelSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// PodTemplateSpec is the pod a controller stamps out.
type PodTemplateSpec struct {
	Metadata ObjectMeta `json:"metadata,omitzero"`
	Spec     PodSpec    `json:"spec"`
}

// Deployment keeps a number of identical pods running and rolls out
// changes to them through ReplicaSets.
type Deployment struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     DeploymentSpec   `json:"spec"`
	Status   DeploymentStatus `json:"status,omitzero"`
}

// DeploymentStrategyType is how a deployment replaces old pods.
type DeploymentStrategyType string

// Deployment strategies.
const (
	RollingUpdate DeploymentStrategyType = "RollingUpdate"
	Recreate      DeploymentStrategyType = "Recreate"
)

// DeploymentSpec is what a deployment keeps true.
type DeploymentSpec struct {
	Replicas        *int32             `json:"replicas,omitempty"`
	Selector        *LabelSelector     `json:"selector"`
	Template        PodTemplateSpec    `json:"template"`
	Strategy        DeploymentStrategy `json:"strategy,omitzero"`
	MinReadySeconds int32              `json:"minReadySeconds,omitempty"`
	// RevisionHistoryLimit is how many old ReplicaSets to keep. Defaults to 10.
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
	Paused               bool   `json:"paused,omitempty"`
}

// DeploymentStrategy is how a deployment rolls out.
type DeploymentStrategy struct {
	Type          DeploymentStrategyType   `json:"type,omitempty"`
	RollingUpdate *RollingUpdateDeployment `json:"rollingUpdate,omitempty"`
}

// RollingUpdateDeployment bounds a rolling update: a count or a percentage
// of the desired replicas ("25%").
type RollingUpdateDeployment struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
}

// DeploymentStatus is what the deployment controller reports.
type DeploymentStatus struct {
	ObservedGeneration  int64       `json:"observedGeneration,omitempty"`
	Replicas            int32       `json:"replicas,omitempty"`
	UpdatedReplicas     int32       `json:"updatedReplicas,omitempty"`
	ReadyReplicas       int32       `json:"readyReplicas,omitempty"`
	AvailableReplicas   int32       `json:"availableReplicas,omitempty"`
	UnavailableReplicas int32       `json:"unavailableReplicas,omitempty"`
	Conditions          []Condition `json:"conditions,omitempty"`
}

// ReplicaSet keeps a number of pods from one template running.
type ReplicaSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     ReplicaSetSpec   `json:"spec"`
	Status   ReplicaSetStatus `json:"status,omitzero"`
}

// ReplicaSetSpec is what a replica set keeps true.
type ReplicaSetSpec struct {
	Replicas        *int32          `json:"replicas,omitempty"`
	Selector        *LabelSelector  `json:"selector"`
	Template        PodTemplateSpec `json:"template"`
	MinReadySeconds int32           `json:"minReadySeconds,omitempty"`
}

// ReplicaSetStatus is what the replica set controller reports.
type ReplicaSetStatus struct {
	ObservedGeneration   int64 `json:"observedGeneration,omitempty"`
	Replicas             int32 `json:"replicas"`
	FullyLabeledReplicas int32 `json:"fullyLabeledReplicas,omitempty"`
	ReadyReplicas        int32 `json:"readyReplicas,omitempty"`
	AvailableReplicas    int32 `json:"availableReplicas,omitempty"`
}

// ---- Service and Endpoints -------------------------------------------------

// ServiceType is how a service is exposed.
type ServiceType string

// Service types.
const (
	ServiceClusterIP ServiceType = "ClusterIP"
	ServiceNodePort  ServiceType = "NodePort"
)

// Service gives a set of pods a stable virtual IP and DNS name.
type Service struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     ServiceSpec `json:"spec"`
}

// ServiceSpec selects the pods behind a service and its ports.
type ServiceSpec struct {
	Type     ServiceType       `json:"type,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	Ports    []ServicePort     `json:"ports"`
	// ClusterIP is allocated from the service CIDR when empty; "None" makes
	// a headless service.
	ClusterIP string `json:"clusterIP,omitempty"`
}

// ServicePort maps a service port to a port of the selected pods.
type ServicePort struct {
	Name     string   `json:"name,omitempty"`
	Protocol Protocol `json:"protocol,omitempty"`
	Port     int32    `json:"port"`
	// TargetPort defaults to Port.
	TargetPort int32 `json:"targetPort,omitempty"`
	// NodePort is allocated for NodePort services when zero.
	NodePort int32 `json:"nodePort,omitempty"`
}

// Endpoints lists the addresses behind a service of the same name.
type Endpoints struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Subsets  []EndpointSubset `json:"subsets,omitempty"`
}

// EndpointSubset is a set of addresses sharing a set of ports.
type EndpointSubset struct {
	Addresses         []EndpointAddress `json:"addresses,omitempty"`
	NotReadyAddresses []EndpointAddress `json:"notReadyAddresses,omitempty"`
	Ports             []EndpointPort    `json:"ports,omitempty"`
}

// EndpointAddress is one pod behind a service.
type EndpointAddress struct {
	IP        string           `json:"ip"`
	NodeName  string           `json:"nodeName,omitempty"`
	TargetRef *ObjectReference `json:"targetRef,omitempty"`
}

// EndpointPort is one port of the endpoints.
type EndpointPort struct {
	Name     string   `json:"name,omitempty"`
	Port     int32    `json:"port"`
	Protocol Protocol `json:"protocol,omitempty"`
}

// ObjectReference points at one object.
type ObjectReference struct {
	Kind   string `json:"kind,omitempty"`
	Tenant string `json:"tenant,omitempty"`
	Name   string `json:"name,omitempty"`
	UID    string `json:"uid,omitempty"`
}

// ServiceAllocation records that a cluster IP or a node port belongs to a
// service. The API server creates it in the same transaction as the
// service (or the update that adds a node port) and deletes it with the
// service, so that two services never hold the same address or port,
// whichever API server allocated them. It is cluster-scoped, named
// "ip-ADDRESS" or "nodeport-PROTOCOL-PORT", and read-only through the API.
type ServiceAllocation struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta            `json:"metadata"`
	Spec     ServiceAllocationSpec `json:"spec"`
}

// ServiceAllocationSpec names the holder of an allocation.
type ServiceAllocationSpec struct {
	// Service is the service holding the address or port (kind, tenant,
	// name and uid).
	Service ObjectReference `json:"service"`
}

// ---- NetworkPolicy ---------------------------------------------------------

// NetworkPolicy narrows the traffic that reaches a tenant's pods. Pods of
// other tenants never reach them, whatever the policies say.
type NetworkPolicy struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     NetworkPolicySpec `json:"spec"`
}

// NetworkPolicySpec selects the pods a policy protects and what may reach
// them.
type NetworkPolicySpec struct {
	// PodSelector selects the pods the policy protects; empty selects all the tenant's pods.
	PodSelector LabelSelector `json:"podSelector"`
	// Ingress lists what may reach the selected pods; none: nothing may.
	Ingress []NetworkPolicyIngressRule `json:"ingress,omitempty"`
}

// NetworkPolicyIngressRule allows traffic from some pods to some ports.
type NetworkPolicyIngressRule struct {
	// From lists the pods allowed; empty: every pod of the tenant.
	From []NetworkPolicyPeer `json:"from,omitempty"`
	// Ports lists the ports allowed; empty: every port.
	Ports []NetworkPolicyPort `json:"ports,omitempty"`
}

// NetworkPolicyPeer selects pods of the policy's tenant.
type NetworkPolicyPeer struct {
	PodSelector LabelSelector `json:"podSelector"`
}

// NetworkPolicyPort is a port (or every port) of a protocol.
type NetworkPolicyPort struct {
	Protocol Protocol `json:"protocol,omitempty"` // default TCP
	Port     int32    `json:"port,omitempty"`     // 0: every port of the protocol
}

// ---- Secret, ConfigMap, Event ----------------------------------------------

// Secret holds sensitive data for a tenant's pods. Data values are base64
// in JSON, as in Kubernetes; StringData is a write-only convenience merged
// into Data on write.
type Secret struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta        `json:"metadata"`
	Type       string            `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
}

// ConfigMap holds configuration for a tenant's pods.
type ConfigMap struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta        `json:"metadata"`
	Data       map[string]string `json:"data,omitempty"`
	BinaryData map[string][]byte `json:"binaryData,omitempty"`
}

// Event records something that happened to an object.
type Event struct {
	TypeMeta       `json:",inline"`
	Metadata       ObjectMeta      `json:"metadata"`
	InvolvedObject ObjectReference `json:"involvedObject"`
	Reason         string          `json:"reason,omitempty"`
	Message        string          `json:"message,omitempty"`
	// Type is Normal or Warning.
	Type           string      `json:"type,omitempty"`
	Source         EventSource `json:"source,omitzero"`
	FirstTimestamp *Time       `json:"firstTimestamp,omitempty"`
	LastTimestamp  *Time       `json:"lastTimestamp,omitempty"`
	Count          int32       `json:"count,omitempty"`
}

// EventSource names the component that reported an event.
type EventSource struct {
	Component string `json:"component,omitempty"`
	Host      string `json:"host,omitempty"`
}

// ---- Lease ---------------------------------------------------------------

// Lease is a lock held for a while and renewed by its holder: node agents
// heartbeat through theirs ("node-NODE"), and the controllers' leader
// holds one. It is cluster-scoped.
type Lease struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     LeaseSpec  `json:"spec"`
}

// LeaseSpec says who holds a lease and until when.
type LeaseSpec struct {
	HolderIdentity       string `json:"holderIdentity,omitempty"`
	LeaseDurationSeconds int32  `json:"leaseDurationSeconds,omitempty"`
	AcquireTime          *Time  `json:"acquireTime,omitempty"`
	RenewTime            *Time  `json:"renewTime,omitempty"`
	LeaseTransitions     int32  `json:"leaseTransitions,omitempty"`
}

// NodeLeaseName is the name of the lease node's agent heartbeats with.
func NodeLeaseName(node string) string { return "node-" + node }
