package runtimev1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// importChunk is the size of the ImportImage messages ImportArchive sends.
const importChunk = 1 << 20

// ImportArchive streams an image archive (an OCI image layout or a
// docker-save tar) to the plugin's image service and returns what it
// imported.
func (c *Client) ImportArchive(ctx context.Context, r io.Reader) (*ImportImageResponse, error) {
	stream, err := c.ImportImage(ctx)
	if err != nil {
		return nil, fmt.Errorf("ImportImage: %w", err)
	}
	buf := make([]byte, importChunk)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := stream.Send(&ImportChunk{Data: buf[:n]}); err != nil {
				// The plugin's answer says why it stopped reading.
				_, aerr := stream.CloseAndRecv()
				return nil, fmt.Errorf("ImportImage: %w", errors.Join(aerr, err))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			stream.CloseSend()
			return nil, rerr
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("ImportImage: %w", err)
	}
	return resp, nil
}

// ImportFile is ImportArchive of the archive at path.
func (c *Client) ImportFile(ctx context.Context, path string) (*ImportImageResponse, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	resp, err := c.ImportArchive(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return resp, nil
}

// Isolation returns how strongly the plugin isolates a RuntimeClass's
// handler, and whether the plugin runs that handler at all: the empty
// handler is the plugin's default; any other must be one of Handlers.
// A handler not in HandlerIsolation isolates as IsolationClass says.
func (r *CapabilitiesResponse) Isolation(handler string) (IsolationClass, bool) {
	if handler != "" && !slices.Contains(r.GetHandlers(), handler) {
		return IsolationClass_ISOLATION_CLASS_UNSPECIFIED, false
	}
	if c, ok := r.GetHandlerIsolation()[handler]; ok {
		return c, true
	}
	return r.GetIsolationClass(), true
}
