// Package secrets fetches the worker's secrets from AWS Secrets Manager.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// ErrNotFound is wrapped when a secret, or its JSON key, does not exist.
var ErrNotFound = errors.New("secret not found")

// Getter is the Secrets Manager call Resolve makes; *secretsmanager.Client
// implements it.
type Getter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Resolve returns the secret named by ref: a secret id or ARN, or "id#key"
// for one key of a JSON secret. Errors name the reference, never the value.
func Resolve(ctx context.Context, api Getter, ref string) (string, error) {
	id, key, hasKey := strings.Cut(ref, "#")
	if id == "" || (hasKey && key == "") {
		return "", fmt.Errorf("secret %q: want an id, or id#key", ref)
	}
	out, err := api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", fmt.Errorf("get secret %q: %w", id, err)
	}
	value := aws.ToString(out.SecretString)
	if out.SecretString == nil {
		value = string(out.SecretBinary)
	}
	// A secret saved from a file often ends in a newline: a key with one
	// would not authenticate, nor match the redaction of its bare value.
	value = strings.TrimSpace(value)
	if !hasKey {
		if value == "" {
			return "", fmt.Errorf("secret %q is empty: %w", id, ErrNotFound)
		}
		return value, nil
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(value), &fields); err != nil {
		return "", fmt.Errorf("secret %q is not a JSON object, so it has no key %q", id, key)
	}
	v, ok := fields[key].(string)
	v = strings.TrimSpace(v)
	if !ok || v == "" {
		return "", fmt.Errorf("secret %q has no string key %q: %w", id, key, ErrNotFound)
	}
	return v, nil
}
