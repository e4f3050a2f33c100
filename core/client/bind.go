package client

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/paddock-dev/paddock/core/api"
)

var podKind, _ = api.KindFor("pods")

// Bind binds a pending pod to a node through the pod's binding
// subresource: the server sets spec.nodeName and PodScheduled=True in
// one compare-and-swap, and answers errdefs.ErrConflict when the pod is
// bound already (to any node), being deleted or finished. It returns the
// bound pod. Only cluster admins (the scheduler) may bind.
func (c *Client) Bind(ctx context.Context, tenant, pod, node string) (*api.Pod, error) {
	body, err := json.Marshal(struct {
		Target string `json:"target"`
	}{node})
	if err != nil {
		return nil, err
	}
	b, err := c.doBody(ctx, http.MethodPost, Path(podKind, tenant, pod)+"/binding", nil, body)
	if err != nil {
		return nil, err
	}
	o, err := api.DecodeStored(podKind, b)
	if err != nil {
		return nil, err
	}
	return o.(*api.Pod), nil
}
