package sqstest

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB returns a DynamoDB client for the emulator.
func (e *Emulator) DynamoDB() *dynamodb.Client {
	return dynamodb.NewFromConfig(AWSConfig(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(e.URL) })
}

// CreateLeaseTable creates a lease table (CONTRACT.md section 6: partition
// key "preview", on demand) named prefix and a random suffix (kumo's store
// is shared by every emulator of the process), and returns its name.
func (e *Emulator) CreateLeaseTable(tb testing.TB, prefix string) string {
	tb.Helper()
	name := prefix + "-" + rand.Text()[:8]
	_, err := e.DynamoDB().CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("preview"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("preview"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		tb.Fatalf("create the lease table %s: %v", name, err)
	}
	return name
}
