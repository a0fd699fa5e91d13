package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/redact"
)

func TestNewMasksSecrets(t *testing.T) {
	for _, format := range []string{"json", "text", "auto"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, Options{Level: slog.LevelDebug, Format: format, Redactor: redact.New("sk-ant-SECRET", "ghp_TOKEN")})
			log.Info("calling with sk-ant-SECRET", "key", "sk-ant-SECRET", "err", errors.New("push https://x:ghp_TOKEN@github.com failed"),
				slog.Group("g", "token", "ghp_TOKEN"), "list", []string{"a", "ghp_TOKEN"},
				"previewUrl", "https://acme-alice-x.preview.example.com/?preview_token=acme-alice-x.abc.SIGNATURE123&x=1")
			out := buf.String()
			for _, secret := range []string{"sk-ant-SECRET", "ghp_TOKEN", "SIGNATURE123"} {
				if strings.Contains(out, secret) {
					t.Errorf("log line leaks %q: %s", secret, out)
				}
			}
			if !strings.Contains(out, redact.Mask) {
				t.Errorf("no mask in %s", out)
			}
		})
	}
}

func TestNewJSONOffTerminal(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, Options{Level: slog.LevelInfo, Format: "auto"}).Info("hello", "job_id", "j1")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("auto format off a terminal is not JSON: %v: %s", err, buf.String())
	}
	if m["msg"] != "hello" || m["job_id"] != "j1" {
		t.Errorf("got %v", m)
	}
}

func TestNewLevel(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Options{Level: slog.LevelWarn, Format: "json"})
	log.Info("quiet")
	log.Warn("loud")
	if strings.Contains(buf.String(), "quiet") || !strings.Contains(buf.String(), "loud") {
		t.Errorf("level not applied: %s", buf.String())
	}
}

func TestWithAddsContextAttributes(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Options{Level: slog.LevelInfo, Format: "json"}).With("component", "workspace")
	ctx := With(context.Background(), "job_id", "j1", "user_id", "u1")
	ctx = With(ctx, slog.String("thread_id", "t1"))
	log.InfoContext(ctx, "cloning")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["job_id"] != "j1" || first["user_id"] != "u1" || first["thread_id"] != "t1" || first["component"] != "workspace" {
		t.Errorf("line with context: %v", first)
	}
	if _, ok := second["job_id"]; ok {
		t.Errorf("line without context has job attributes: %v", second)
	}
}
