package ecstask

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// PrivateIPv4 reads this container's private IPv4 address (awsvpc: the
// task's) from $ECS_CONTAINER_METADATA_URI_V4, the container's own metadata.
func PrivateIPv4(ctx context.Context, client *http.Client, metadataURI string) (string, error) {
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, MetadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(metadataURI, "/"), nil)
	if err != nil {
		return "", fmt.Errorf("container metadata request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get container metadata: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read container metadata: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get container metadata: status %d", resp.StatusCode)
	}
	var c struct {
		Networks []struct {
			IPv4Addresses []string `json:"IPv4Addresses"`
		} `json:"Networks"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return "", fmt.Errorf("decode container metadata: %w", err)
	}
	for _, n := range c.Networks {
		for _, ip := range n.IPv4Addresses {
			if ip != "" {
				return ip, nil
			}
		}
	}
	return "", errors.New("container metadata names no IPv4 address")
}
