package secrets_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/sivchari/kumo"

	"github.com/webordinary/claude-code-astro/internal/secrets"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
)

func TestResolve(t *testing.T) {
	srv := kumo.NewServer()
	t.Cleanup(srv.Close)
	sm := secretsmanager.NewFromConfig(sqstest.AWSConfig(), func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	ctx := context.Background()
	for name, value := range map[string]string{
		"plain": "sk-ant-plain-value",
		"json":  `{"apiKey":"sk-ant-json-value","other":1}`,
		"text":  "not json at all",
	} {
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ref, want, errHas string
	}{
		{"plain", "sk-ant-plain-value", ""},
		{"json#apiKey", "sk-ant-json-value", ""},
		{"json#other", "", `no string key "other"`},
		{"json#missing", "", `no string key "missing"`},
		{"text#apiKey", "", "not a JSON object"},
		{"absent", "", `get secret "absent"`},
		{"#key", "", "want an id"},
		{"plain#", "", "want an id"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := secrets.Resolve(ctx, sm, tt.ref)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want it to say %q", err, tt.errHas)
				}
				if strings.Contains(err.Error(), "sk-ant") {
					t.Errorf("error leaks the value: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
