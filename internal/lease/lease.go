// Package lease is the preview lease table (CONTRACT.md section 6): a
// DynamoDB table, partition key "preview", whose item says which worker
// serves a user's preview now. A Table reads and writes items with
// conditional writes on the item's epoch (a fencing token: +1 at every change
// of owner), so one preview has one owner at a time and its epoch never goes
// back. A Holder is one worker's side: it takes leases, renews them every
// third of their lifetime, ends them, and says when one was taken over.
package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names of an item.
const (
	attrPreview   = "preview"
	attrClientID  = "clientId"
	attrUserID    = "userId"
	attrOwner     = "owner"
	attrAddr      = "addr"
	attrEpoch     = "epoch"
	attrExpiresAt = "expiresAt"
)

// ErrTaken reports a conditional write that lost: another worker changed the
// item first (took the lease, or renewed the one it holds).
var ErrTaken = errors.New("the lease is held by another worker")

// Lease is one item of the table.
type Lease struct {
	Preview  string // the preview id (partition key)
	ClientID string
	UserID   string
	Owner    string // the worker's id: its task ARN, or a random id off ECS
	Addr     string // host:port at which routers reach the owner
	Epoch    int64  // +1 at every change of owner
	// ExpiresAt is the end of the lease (whole seconds): an item whose
	// ExpiresAt has passed is no lease, but still names the user behind it.
	ExpiresAt time.Time
}

// Live reports whether the lease is held at now.
func (l Lease) Live(now time.Time) bool { return l.Owner != "" && now.Before(l.ExpiresAt) }

// API is the DynamoDB calls a Table makes; *dynamodb.Client implements it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// Table is the lease table LEASE_TABLE. It is safe for concurrent use.
type Table struct {
	api  API
	name string
	now  func() time.Time
}

// NewTable returns the table name reached through api.
func NewTable(api API, name string) *Table {
	return &Table{api: api, name: name, now: time.Now}
}

// Name returns the table's name.
func (t *Table) Name() string { return t.name }

// Get returns preview's item; found is false when there is none. The read
// is strongly consistent.
func (t *Table) Get(ctx context.Context, preview string) (l Lease, found bool, err error) {
	out, err := t.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(t.name),
		Key:            map[string]types.AttributeValue{attrPreview: str(preview)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("read the lease of %s: %w", preview, err)
	}
	if len(out.Item) == 0 {
		return Lease{}, false, nil
	}
	return decode(out.Item), true, nil
}

// Take makes want.Owner the holder of want.Preview's lease at want.Addr
// until ttl from now, whoever held it before: the lease follows the user's
// latest job. Held by want.Owner already, it is renewed at the same epoch;
// otherwise the epoch grows by one. The write is conditioned on the epoch
// read, so of two workers taking one lease at once exactly one wins; the
// other gets ErrTaken.
func (t *Table) Take(ctx context.Context, want Lease, ttl time.Duration) (Lease, error) {
	return t.take(ctx, want, ttl, true)
}

// TakeFree is Take, but only when no other worker holds a live lease on
// want.Preview (ErrTaken then): a page load that reached a worker late (a
// router's cached route) must not take a preview back from the worker that
// ran its user's latest job.
func (t *Table) TakeFree(ctx context.Context, want Lease, ttl time.Duration) (Lease, error) {
	return t.take(ctx, want, ttl, false)
}

func (t *Table) take(ctx context.Context, want Lease, ttl time.Duration, takeover bool) (Lease, error) {
	cur, found, err := t.Get(ctx, want.Preview)
	if err != nil {
		return Lease{}, err
	}
	now := t.now()
	if !takeover && found && cur.Owner != want.Owner && cur.Live(now) {
		return Lease{}, fmt.Errorf("take the lease of %s: %w", want.Preview, ErrTaken)
	}
	l := want
	l.ExpiresAt = expiry(now, ttl)
	l.Epoch = 1
	if found {
		l.Epoch = cur.Epoch
		if cur.Owner != want.Owner || !cur.Live(now) {
			l.Epoch++
		}
	}
	item := map[string]types.AttributeValue{
		attrPreview: str(l.Preview), attrClientID: str(l.ClientID), attrUserID: str(l.UserID),
		attrOwner: str(l.Owner), attrAddr: str(l.Addr), attrEpoch: num(l.Epoch), attrExpiresAt: num(l.ExpiresAt.Unix()),
	}
	in := &dynamodb.PutItemInput{TableName: aws.String(t.name), Item: item,
		ConditionExpression:      aws.String("attribute_not_exists(#p)"),
		ExpressionAttributeNames: map[string]string{"#p": attrPreview},
	}
	if found {
		// The epoch read, or an ended lease whose epoch is below ours: a
		// lease is never taken back to an older epoch.
		in.ConditionExpression = aws.String("attribute_not_exists(#p) OR #e = :e OR (#x < :now AND #e < :new)")
		in.ExpressionAttributeNames["#e"] = attrEpoch
		in.ExpressionAttributeNames["#x"] = attrExpiresAt
		in.ExpressionAttributeValues = map[string]types.AttributeValue{
			":e": num(cur.Epoch), ":now": num(now.Unix()), ":new": num(l.Epoch),
		}
	}
	if _, err := t.api.PutItem(ctx, in); err != nil {
		if isConditionFailed(err) {
			return Lease{}, fmt.Errorf("take the lease of %s: %w", want.Preview, ErrTaken)
		}
		return Lease{}, fmt.Errorf("take the lease of %s: %w", want.Preview, err)
	}
	return l, nil
}

// Renew extends l (held by l.Owner at l.Epoch) until ttl from now, and
// returns it renewed; ErrTaken when another worker has taken it since.
func (t *Table) Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	exp := expiry(t.now(), ttl)
	if err := t.setExpiry(ctx, l, exp); err != nil {
		return Lease{}, fmt.Errorf("renew the lease of %s: %w", l.Preview, err)
	}
	l.ExpiresAt = exp
	return l, nil
}

// End ends l now, keeping the item (its ids let a router wake the preview);
// ErrTaken when another worker holds it already.
func (t *Table) End(ctx context.Context, l Lease) error {
	if err := t.setExpiry(ctx, l, time.Unix(t.now().Unix(), 0)); err != nil {
		return fmt.Errorf("end the lease of %s: %w", l.Preview, err)
	}
	return nil
}

// setExpiry sets l's expiresAt, conditioned on its owner and epoch.
func (t *Table) setExpiry(ctx context.Context, l Lease, exp time.Time) error {
	_, err := t.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(t.name),
		Key:                      map[string]types.AttributeValue{attrPreview: str(l.Preview)},
		UpdateExpression:         aws.String("SET #x = :x"),
		ConditionExpression:      aws.String("#o = :o AND #e = :e"),
		ExpressionAttributeNames: map[string]string{"#x": attrExpiresAt, "#o": attrOwner, "#e": attrEpoch},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":x": num(exp.Unix()), ":o": str(l.Owner), ":e": num(l.Epoch),
		},
	})
	if isConditionFailed(err) {
		return ErrTaken
	}
	return err
}

// CreateTable creates the lease table as the stack does (on-demand), for
// `worker local` and the tests; the TTL on expiresAt is the stack's business.
func CreateTable(ctx context.Context, api interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
}, name string) error {
	_, err := api.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrPreview), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrPreview), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create the lease table %s: %w", name, err)
	}
	return nil
}

// expiry is now+ttl rounded up to a whole second (expiresAt is Unix seconds).
func expiry(now time.Time, ttl time.Duration) time.Time {
	t := now.Add(ttl)
	if t.Truncate(time.Second).Equal(t) {
		return t
	}
	return t.Truncate(time.Second).Add(time.Second)
}

// isConditionFailed reports a conditional write that did not hold.
func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// decode reads an item; missing or malformed attributes stay zero.
func decode(item map[string]types.AttributeValue) Lease {
	s := func(k string) string {
		if v, ok := item[k].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	n := func(k string) int64 {
		if v, ok := item[k].(*types.AttributeValueMemberN); ok {
			i, _ := strconv.ParseInt(v.Value, 10, 64) // malformed: zero, an ended lease
			return i
		}
		return 0
	}
	return Lease{Preview: s(attrPreview), ClientID: s(attrClientID), UserID: s(attrUserID), Owner: s(attrOwner),
		Addr: s(attrAddr), Epoch: n(attrEpoch), ExpiresAt: time.Unix(n(attrExpiresAt), 0)}
}
