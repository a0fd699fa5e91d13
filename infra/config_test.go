package infra

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/webordinary/claude-code-astro/internal/config"
)

// imageEnv returns the ENV defaults of the Dockerfile's runtime stage.
func imageEnv(tb testing.TB) map[string]string {
	tb.Helper()
	env := map[string]string{}
	for _, e := range commands[*instructions.EnvCommand](parseDockerfile(tb).final()) {
		for _, kv := range e.Env {
			env[kv.Key] = kv.Value
		}
	}
	return env
}

// sampleParameters are deploy-time values for the template's parameters that
// have no default.
var sampleParameters = map[string]string{
	"VpcId":                    "vpc-0123456789abcdef0",
	"Subnets":                  "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
	"ImageUri":                 "123456789012.dkr.ecr.us-east-1.amazonaws.com/claude-code-astro-worker:1.0.0",
	"AnthropicApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:worker/anthropic-api-key-AbCdEf",
	"GithubTokenSecretArn":     "arn:aws:secretsmanager:us-east-1:123456789012:secret:worker/github-token-AbCdEf",
}

// TestWorkerConfigAcceptsCompose runs the worker's own configuration loader
// (package config) on the environment the compose file's worker gets: the
// image's ENV with the service's environment on top.
func TestWorkerConfigAcceptsCompose(t *testing.T) {
	env := imageEnv(t)
	w := service(t, loadCompose(t, map[string]string{}), composeWorker)
	for k := range w.Environment {
		env[k] = envValue(w, k)
	}
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("worker config rejects the compose environment: %v", err)
	}
	if cfg.AnthropicAPIKeySecretID == "" || cfg.RepoURL == "" || cfg.ClaudeBin != "/opt/tools/node_modules/.bin/claude" {
		t.Errorf("compose config: secret id %q, repo %q, claude %q", cfg.AnthropicAPIKeySecretID, cfg.RepoURL, cfg.ClaudeBin)
	}
}

// TestWorkerConfigAcceptsTaskDefinition does the same for the task
// definition's environment, with references replaced by what CloudFormation
// would put there (queue URLs for queues, parameter values, the region) and
// the variable ECS adds itself.
func TestWorkerConfigAcceptsTaskDefinition(t *testing.T) {
	raw := rawTemplate(t)
	params := section(raw, "Parameters")
	for name, v := range sampleParameters {
		p, _ := params[name].(map[string]any)
		if p == nil {
			t.Errorf("sample for unknown parameter %s", name)
			continue
		}
		if _, hasDefault := p["Default"]; hasDefault {
			t.Errorf("sample for parameter %s, which has a default", name)
		}
		if pat, ok := p["AllowedPattern"].(string); ok && !regexp.MustCompile(pat).MatchString(v) {
			t.Errorf("sample %s = %q does not match its AllowedPattern %s", name, v, pat)
		}
	}
	for name, p := range params {
		pm, _ := p.(map[string]any)
		if _, hasDefault := pm["Default"]; !hasDefault {
			if _, ok := sampleParameters[name]; !ok {
				t.Errorf("parameter %s has no default: add a sample value", name)
			}
		}
	}
	var resolve func(v any) (string, error)
	resolve = func(v any) (string, error) {
		if m, ok := v.(map[string]any); ok {
			if args, ok := m["Fn::If"].([]any); ok && len(args) == 3 {
				return resolve(args[2]) // the defaults' branch (no PreviewCertificateArn: no fleet routers)
			}
			if tpl, ok := m["Fn::Sub"].(string); ok {
				var err error
				out := regexp.MustCompile(`\$\{([^}]+)\}`).ReplaceAllStringFunc(tpl, func(ref string) string {
					val, rerr := resolve(map[string]any{"Ref": ref[2 : len(ref)-1]})
					if rerr != nil {
						err = rerr
					}
					return val
				})
				return out, err
			}
		}
		switch r := describeResource(v); {
		case r == "Ref:AWS::Region":
			return "us-east-1", nil
		case strings.HasPrefix(r, "Ref:"):
			name := strings.TrimPrefix(r, "Ref:")
			if res, ok := section(raw, "Resources")[name].(map[string]any); ok {
				switch res["Type"] {
				case "AWS::SQS::Queue": // Ref is the queue's URL
					return "https://sqs.us-east-1.amazonaws.com/123456789012/" + strings.ToLower(name) + ".fifo", nil
				case "AWS::SecretsManager::Secret": // Ref is the secret's ARN
					return "arn:aws:secretsmanager:us-east-1:123456789012:secret:worker/" + strings.ToLower(name) + "-AbCdEf", nil
				}
				return "", fmt.Errorf("Ref to %s (%v) in the environment", name, res["Type"])
			}
			if s, ok := sampleParameters[name]; ok {
				return s, nil
			}
			p, _ := params[name].(map[string]any)
			if d, ok := p["Default"]; ok {
				return fmt.Sprint(d), nil
			}
			return "", fmt.Errorf("parameter %s has no default and no sample", name)
		case strings.HasPrefix(r, "{"):
			return "", fmt.Errorf("unsupported value %s", r)
		default:
			return r, nil
		}
	}

	env := imageEnv(t)
	env["ECS_CONTAINER_METADATA_URI_V4"] = "http://169.254.170.2/v4/0123456789abcdef-1234567890"
	env["ECS_AGENT_URI"] = "http://169.254.170.2/api/0123456789abcdef-1234567890" // Fargate 1.4 sets it
	defs, _ := resourceProps(t, raw, "TaskDefinition")["ContainerDefinitions"].([]any)
	container, _ := defs[0].(map[string]any)
	vars, _ := container["Environment"].([]any)
	for _, v := range vars {
		kv, _ := v.(map[string]any)
		val, err := resolve(kv["Value"])
		if err != nil {
			t.Fatalf("environment %v: %v", kv["Name"], err)
		}
		env[fmt.Sprint(kv["Name"])] = val
	}
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("worker config rejects the task definition's environment: %v", err)
	}
	if cfg.JobQueueURL == cfg.ResponseQueueURL || cfg.GitHubTokenSecretID != sampleParameters["GithubTokenSecretArn"] {
		t.Errorf("task config: job %q, response %q, token id %q", cfg.JobQueueURL, cfg.ResponseQueueURL, cfg.GitHubTokenSecretID)
	}
}
