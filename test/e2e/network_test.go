package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

const networkManifests = `apiVersion: paddock.dev/v1
kind: Service
metadata: {name: web, tenant: acme}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: client, tenant: acme, labels: {app: client}}
spec:
  containers:
  - {name: sh, image: "paddock.dev/test/busybox:latest", command: [sleep, "3600"]}
---
apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: frontend, tenant: acme, labels: {role: frontend}}
spec:
  containers:
  - {name: sh, image: "paddock.dev/test/busybox:latest", command: [sleep, "3600"]}
---
apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: intruder, tenant: other, labels: {app: intruder}}
spec:
  containers:
  - {name: sh, image: "paddock.dev/test/busybox:latest", command: [sleep, "3600"]}
`

// Web only accepts pods labelled role=frontend, on its port 8080.
const frontendOnly = `apiVersion: paddock.dev/v1
kind: NetworkPolicy
metadata: {name: web-from-frontend, tenant: acme}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: frontend}}}]
    ports: [{port: 8080}]
`

// The issue's networking story through the real binaries on `paddock
// up` with the bridge plugin: a pod reaches another pod of its tenant by
// IP and by the service's DNS name; a pod of another tenant reaches
// neither, and the packets are dropped on the way (a counter inside the
// target pod's network namespace never sees them); a NetworkPolicy
// narrows traffic as written; a NodePort answers from the host; deleting
// pods frees their addresses.
func TestNetworkEndToEnd(t *testing.T) {
	u := clusterUp(t)
	cfg := u.admin
	for _, tn := range []string{"acme", "other"} {
		mustPaddock(t, cfg, "", "tenant", "create", tn)
	}
	mustPaddock(t, cfg, "", "run", "web", "-t", "acme", "--image", "paddock.dev/test/server:latest", "--replicas", "2")
	mustPaddock(t, cfg, networkManifests, "apply", "-f", "-")
	webPods := runningIn(t, u, "acme", "app=web", 2)
	runningIn(t, u, "acme", "app=client", 1)
	runningIn(t, u, "acme", "role=frontend", 1)
	runningIn(t, u, "other", "app=intruder", 1)

	web := tenantPod(t, u, "acme", webPods[0])
	if _, err := netip.ParseAddr(web.Status.PodIP); err != nil {
		t.Fatalf("pod %s has no IP: %q", web.Metadata.Name, web.Status.PodIP)
	}
	webURL := fmt.Sprintf("http://%s:8080/", web.Status.PodIP)
	svc := service(t, u, "acme", "web")
	if svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("service web: clusterIP %q ports %+v, want an allocated IP and node port", svc.Spec.ClusterIP, svc.Spec.Ports)
	}
	r := mustPaddock(t, cfg, "", "get", "services", "-t", "acme")
	if want := fmt.Sprintf("80:%d/TCP", svc.Spec.Ports[0].NodePort); !strings.Contains(r.stdout, svc.Spec.ClusterIP) || !strings.Contains(r.stdout, want) {
		t.Errorf("get services does not show the cluster IP %s and ports %s:\n%s", svc.Spec.ClusterIP, want, r.stdout)
	}

	// A counter inside the target pod's network namespace sees every TCP
	// packet that reaches its port 8080.
	synCounter := newSYNCounter(t, u, web)

	// Same tenant: by IP and by the service's DNS names.
	if out := fetchFrom(t, u, "acme", "client", webURL); strings.TrimSpace(out) != web.Metadata.Name {
		t.Errorf("acme/client fetching %s got %q, want %q", webURL, out, web.Metadata.Name)
	}
	seen := synCounter.value(t)
	if seen == 0 {
		t.Fatalf("the counter in %s's network namespace saw no packet of a connection that worked", web.Metadata.Name)
	}
	for _, name := range []string{"web", "web.acme.svc.cluster.local"} {
		out := fetchFrom(t, u, "acme", "client", "http://"+name+"/")
		if !slices.Contains(webPods, strings.TrimSpace(out)) {
			t.Errorf("acme/client fetching http://%s/ got %q, want one of %v", name, out, webPods)
		}
	}
	r = execIn(t, u, "acme", "client", "nslookup web.acme.svc.cluster.local")
	if r.code != 0 || !strings.Contains(r.stdout, svc.Spec.ClusterIP) {
		t.Errorf("nslookup from acme: %s, want the cluster IP %s", r, svc.Spec.ClusterIP)
	}

	// Another tenant: neither the pod's IP nor the service's IP nor its
	// name, and nothing reaches the pod.
	before := synCounter.value(t)
	for _, url := range []string{webURL, "http://" + svc.Spec.ClusterIP + "/"} {
		if r := execIn(t, u, "other", "intruder", "timeout 3 wget -qO- "+url); r.code == 0 {
			t.Errorf("other/intruder reached %s: %s", url, r)
		}
	}
	if after := synCounter.value(t); after != before {
		t.Errorf("%d packets of other/intruder reached %s; want them dropped before", after-before, web.Metadata.Name)
	}
	if r := execIn(t, u, "other", "intruder", "nslookup web.acme.svc.cluster.local"); r.code == 0 || strings.Contains(r.stdout, svc.Spec.ClusterIP) {
		t.Errorf("other/intruder resolved acme's service: %s", r)
	}

	// A NodePort answers from the host, on the node's pod gateway.
	gateway := nodeGateway(t, u)
	nodeURL := fmt.Sprintf("http://%s:%d/", gateway, svc.Spec.Ports[0].NodePort)
	if out := httpGet(t, nodeURL); !slices.Contains(webPods, strings.TrimSpace(out)) {
		t.Errorf("GET %s from the host = %q, want one of %v", nodeURL, out, webPods)
	}

	// The NetworkPolicy: frontend reaches web on 8080, client no longer.
	mustPaddock(t, cfg, frontendOnly, "apply", "-f", "-")
	eventually(t, 30*time.Second, "acme/client is cut off from web by the NetworkPolicy", func() bool {
		return execIn(t, u, "acme", "client", "timeout 3 wget -qO- "+webURL).code != 0
	})
	if out := fetchFrom(t, u, "acme", "frontend", webURL); strings.TrimSpace(out) != web.Metadata.Name {
		t.Errorf("acme/frontend fetching %s under the policy got %q", webURL, out)
	}
	mustPaddock(t, cfg, "", "delete", "networkpolicy", "web-from-frontend", "-t", "acme")
	eventually(t, 30*time.Second, "acme/client reaches web again once the policy is gone", func() bool {
		return execIn(t, u, "acme", "client", "timeout 3 wget -qO- "+webURL).code == 0
	})

	// Deleting pods frees their addresses.
	if n := addressesInUse(t, u); n != 5 {
		t.Errorf("%d pod addresses in use with 5 pods, want 5", n)
	}
	mustPaddock(t, cfg, "", "delete", "deployment", "web", "-t", "acme")
	mustPaddock(t, cfg, "", "delete", "pod", "client", "frontend", "-t", "acme", "--grace-period", "0")
	mustPaddock(t, cfg, "", "delete", "pod", "intruder", "-t", "other", "--grace-period", "0")
	eventually(t, 60*time.Second, "the deleted pods' addresses are released", func() bool { return addressesInUse(t, u) == 0 })
}

func tenantPod(t *testing.T, u *up, tenant, name string) *api.Pod {
	t.Helper()
	r := mustPaddock(t, u.admin, "", "get", "pod", name, "-t", tenant, "-o", "json")
	var p api.Pod
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("get pod -o json: %v", err)
	}
	return &p
}

func service(t *testing.T, u *up, tenant, name string) *api.Service {
	t.Helper()
	r := mustPaddock(t, u.admin, "", "get", "service", name, "-t", tenant, "-o", "json")
	var s api.Service
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("get service -o json: %v", err)
	}
	return &s
}

// execIn runs a shell command in the pod's container.
func execIn(t *testing.T, u *up, tenant, pod, command string) result {
	t.Helper()
	return paddock(t, u.admin, "", "exec", "--tenant", tenant, pod, "--", "sh", "-c", command)
}

// fetchFrom fetches url from inside the pod, retrying for a while (the
// service's endpoints and rules follow the pods within moments).
func fetchFrom(t *testing.T, u *up, tenant, pod, url string) string {
	t.Helper()
	var r result
	eventually(t, 30*time.Second, fmt.Sprintf("%s/%s fetches %s", tenant, pod, url), func() bool {
		r = execIn(t, u, tenant, pod, "timeout 5 wget -qO- "+url)
		return r.code == 0
	})
	return r.stdout
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	var body string
	c := &http.Client{Timeout: 5 * time.Second}
	eventually(t, 30*time.Second, "GET "+url, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return body
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// node returns the up's Node.
func node(t *testing.T, u *up) *api.Node {
	t.Helper()
	r := mustPaddock(t, u.admin, "", "get", "node", u.node, "-o", "json")
	var n api.Node
	if err := json.Unmarshal([]byte(r.stdout), &n); err != nil {
		t.Fatalf("get node -o json: %v", err)
	}
	return &n
}

// nodeGateway is the first address of the node's pod range: the bridge's
// address on the host.
func nodeGateway(t *testing.T, u *up) string {
	t.Helper()
	p, err := netip.ParsePrefix(node(t, u).Spec.PodCIDR)
	if err != nil {
		t.Fatalf("node pod CIDR: %v", err)
	}
	return p.Addr().Next().String()
}

var inUse = regexp.MustCompile(`(\d+) of \d+ pod addresses`)

// addressesInUse reads the node's NetworkReady condition.
func addressesInUse(t *testing.T, u *up) int {
	t.Helper()
	for _, c := range node(t, u).Status.Conditions {
		if c.Type == "NetworkReady" {
			m := inUse.FindStringSubmatch(c.Message)
			if m == nil {
				t.Fatalf("NetworkReady condition %q does not count addresses", c.Message)
			}
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatalf("node %s has no NetworkReady condition", u.node)
	return 0
}

// synCounter counts, inside a pod's network namespace, the TCP packets
// that arrive for its port 8080.
type synCounter struct{ ns string }

func newSYNCounter(t *testing.T, u *up, pod *api.Pod) *synCounter {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(u.dataDir, "agent", "netns", pod.Metadata.UID+"-*"))
	if len(matches) != 1 {
		t.Fatalf("network namespace of pod %s: %v", pod.Metadata.Name, matches)
	}
	c := &synCounter{ns: matches[0]}
	c.nft(t, "add table inet e2e-probe")
	c.nft(t, "add chain inet e2e-probe in { type filter hook input priority -300; }")
	c.nft(t, "add counter inet e2e-probe to-web")
	c.nft(t, `add rule inet e2e-probe in tcp dport 8080 counter name "to-web"`)
	return c
}

func (c *synCounter) nft(t *testing.T, command string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + c.ns, "nft"}, strings.Fields(command)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in %s: %v\n%s", command, c.ns, err, out)
	}
	return string(out)
}

func (c *synCounter) value(t *testing.T) int {
	t.Helper()
	out := c.nft(t, "-j list counter inet e2e-probe to-web")
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets int `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft counter: %v\n%s", err, out)
	}
	for _, e := range doc.Nftables {
		if e.Counter != nil {
			return e.Counter.Packets
		}
	}
	t.Fatalf("no counter in %s", out)
	return 0
}
