#!/bin/sh
# LocalStack ready hook (mounted at /etc/localstack/init/ready.d/): creates what
# the worker in docker-compose.yml is pointed at. It runs on every start of the
# container (LocalStack keeps no state between starts here) and is idempotent:
# create-queue with the same attributes and create-secret on an existing name
# are both handled.
#
# Queues (the names end the queue URLs in docker-compose.yml):
#   worker-jobs.fifo       jobs, FIFO, content-based deduplication,
#                          redrive to worker-jobs-dlq.fifo after 5 receives
#   worker-jobs-dlq.fifo   the jobs' dead-letter queue (FIFO, as SQS requires)
#   worker-responses.fifo  responses, FIFO; the worker sets its own dedup ids
# Secrets (the ids the worker gets as *_SECRET_ID):
#   worker/anthropic-api-key  the value of ANTHROPIC_API_KEY given to this
#                             container, or a placeholder
#   worker/github-token       the value of GITHUB_TOKEN, or a placeholder
#                             (the local example repo needs no token)
#   worker/preview-secret     the key of preview tokens, shared by the worker
#                             and the router: PREVIEW_SECRET, or random
# Table:
#   worker-preview-leases     the preview lease table (partition key preview,
#                             TTL on expiresAt)
set -eu

# docker-compose.yml's healthcheck waits for this file.
marker="${WORKER_INIT_MARKER:-/tmp/worker-init-done}"
rm -f "$marker"

region="${AWS_DEFAULT_REGION:-us-east-1}"
account=000000000000

awslocal sqs create-queue --queue-name worker-jobs-dlq.fifo \
  --attributes '{"FifoQueue":"true","MessageRetentionPeriod":"1209600"}' >/dev/null

dlq_arn="arn:aws:sqs:${region}:${account}:worker-jobs-dlq.fifo"
redrive="{\\\"deadLetterTargetArn\\\":\\\"${dlq_arn}\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}"

awslocal sqs create-queue --queue-name worker-jobs.fifo \
  --attributes "{\"FifoQueue\":\"true\",\"ContentBasedDeduplication\":\"true\",\"VisibilityTimeout\":\"120\",\"ReceiveMessageWaitTimeSeconds\":\"20\",\"RedrivePolicy\":\"${redrive}\"}" >/dev/null

awslocal sqs create-queue --queue-name worker-responses.fifo \
  --attributes '{"FifoQueue":"true","ReceiveMessageWaitTimeSeconds":"20"}' >/dev/null

# put_secret NAME VALUE: creates the secret, or sets its value when it exists.
put_secret() {
  if awslocal secretsmanager describe-secret --secret-id "$1" >/dev/null 2>&1; then
    awslocal secretsmanager put-secret-value --secret-id "$1" --secret-string "$2" >/dev/null
  else
    awslocal secretsmanager create-secret --name "$1" --secret-string "$2" >/dev/null
  fi
}

put_secret worker/anthropic-api-key "${ANTHROPIC_API_KEY:-sk-ant-placeholder-set-ANTHROPIC_API_KEY}"
put_secret worker/github-token "${GITHUB_TOKEN:-placeholder-github-token}"
put_secret worker/preview-secret "${PREVIEW_SECRET:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}"

if ! awslocal dynamodb describe-table --table-name worker-preview-leases >/dev/null 2>&1; then
  awslocal dynamodb create-table --table-name worker-preview-leases \
    --attribute-definitions AttributeName=preview,AttributeType=S \
    --key-schema AttributeName=preview,KeyType=HASH \
    --billing-mode PAY_PER_REQUEST >/dev/null
  awslocal dynamodb update-time-to-live --table-name worker-preview-leases \
    --time-to-live-specification Enabled=true,AttributeName=expiresAt >/dev/null
fi

echo "worker queues, secrets and lease table ready"
touch "$marker"
