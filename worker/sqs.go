package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/webordinary/claude-code-astro/internal/ident"
	"github.com/webordinary/claude-code-astro/jobs"
)

// SQSClient lists the SQS calls the worker makes; *sqs.Client implements it.
type SQSClient interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// permanent says what to fix when err is an SQS error that retrying cannot
// heal: no such queue, credentials SQS refuses, access denied, an endpoint
// that does not answer as SQS. "" for every other error (a network
// failure, throttling, a 5xx: they can heal).
func permanent(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
			return "the queue does not exist (check the URL, and AWS_REGION or AWS_ENDPOINT_URL)"
		case "InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId", "SignatureDoesNotMatch",
			"InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException":
			return "SQS refuses the worker's AWS credentials (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the task role)"
		case "AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException":
			return "access denied: the worker's AWS identity may not use the queue (its IAM policy)"
		}
	}
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		return "the endpoint does not answer as SQS (check AWS_ENDPOINT_URL)"
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && (re.HTTPStatusCode() == 404 || re.HTTPStatusCode() == 405) {
		return "the endpoint does not answer as SQS (check AWS_ENDPOINT_URL)"
	}
	return ""
}

// isMissingQueue reports whether err says the queue does not exist.
// Emulators and SQS's two protocols name it differently: match the code.
func isMissingQueue(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
		return true
	}
	return false
}

// maxReceiveCount reads maxReceiveCount from a queue's RedrivePolicy
// attribute (a JSON object; the count is a number or a string); 0 when
// there is none.
func maxReceiveCount(policy string) int {
	if policy == "" {
		return 0
	}
	var p struct {
		MaxReceiveCount json.RawMessage `json:"maxReceiveCount"`
	}
	if json.Unmarshal([]byte(policy), &p) != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.Trim(string(p.MaxReceiveCount), `"`))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// responseGroup returns the FIFO group of a message's answers: the job's
// clientId/userId when both are valid, else the incoming message's own group
// when SQS would accept it, else invalidGroup.
func responseGroup(job jobs.Job, m types.Message) string {
	if ident.ValidID(job.ClientID) && ident.ValidID(job.UserID) {
		return job.UserKey()
	}
	if g := m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]; validGroupID(g) {
		return g
	}
	return invalidGroup
}

// validGroupID reports whether SQS accepts g as a MessageGroupId: 1-128
// characters, letters, digits and ASCII punctuation.
func validGroupID(g string) bool {
	if len(g) == 0 || len(g) > 128 {
		return false
	}
	for _, r := range g {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

// isFIFO reports whether a queue URL names a FIFO queue.
func isFIFO(queueURL string) bool { return strings.HasSuffix(queueURL, ".fifo") }

// dedupID returns a FIFO deduplication id: the parts joined by ':' when that
// fits SQS's 128 characters, a hash of them otherwise.
func dedupID(parts ...string) string {
	id := strings.Join(parts, ":")
	if len(id) <= 128 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}
