// Package infra holds no Go code of the worker: it is the home of the
// deployment files' tests. The tests check, with the real parsers and linters
// and without a Docker engine or AWS account, that
//
//   - the Dockerfile (repository root) parses with BuildKit's parser, passes
//     BuildKit's linter with no warning, and builds the image the worker needs
//     (multi-stage, non-root user, HEALTHCHECK running `worker healthcheck`,
//     port 8080, the Claude Code CLI from tools/package-lock.json);
//   - docker-compose.yml loads with compose-go and gives the worker every
//     setting it requires, pointing at the queues and secrets that the
//     LocalStack init hook (localstack/init/ready.d) creates;
//   - the CloudFormation template worker.yaml parses with goformation, every
//     reference in it resolves, and its IAM policies grant no more than the
//     worker needs.
//
// Run them with `go test ./infra/`. infra/README.md is the deploy guide.
package infra
