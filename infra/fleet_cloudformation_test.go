package infra

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// testCertificate is PreviewCertificateArn in these tests: set, the stack
// runs the fleet's previews.
const testCertificate = "arn:aws:acm:us-east-1:123456789012:certificate/0b1d2c3e-preview"

// openFleetTemplate parses the template with goformation, PreviewCertificateArn set.
func openFleetTemplate(t *testing.T) *cloudformation.Template {
	t.Helper()
	tpl, err := goformation.OpenWithOptions(filepath.Join(repoRoot(t), templateFile), &intrinsics.ProcessorOptions{
		ParameterOverrides: map[string]any{"PreviewCertificateArn": testCertificate, "PreviewBaseUrl": "https://{preview}.preview.example.com/"},
	})
	if err != nil {
		t.Fatalf("parse %s: %v", templateFile, err)
	}
	return tpl
}

// TestTemplateFleetPreviews checks the router's side of the stack: the lease
// table, the load balancer and its listener, the router service and its
// scaling, and who may reach the workers' port.
func TestTemplateFleetPreviews(t *testing.T) {
	tpl := openFleetTemplate(t)
	raw := rawTemplate(t)

	table, err := tpl.GetDynamoDBTableWithName("LeaseTable")
	if err != nil {
		t.Fatal(err)
	}
	if deref(table.BillingMode) != "PAY_PER_REQUEST" || len(table.KeySchema) != 1 || table.KeySchema[0].AttributeName != "preview" || table.KeySchema[0].KeyType != "HASH" {
		t.Errorf("lease table: billing %q, key %+v; want on demand, partition key preview", deref(table.BillingMode), table.KeySchema)
	}
	if ttl := table.TimeToLiveSpecification; ttl == nil || deref(ttl.AttributeName) != "expiresAt" || !ttl.Enabled {
		t.Errorf("lease table TTL %+v, want on expiresAt", ttl)
	}

	lb, err := tpl.GetElasticLoadBalancingV2LoadBalancerWithName("LoadBalancer")
	if err != nil {
		t.Fatal(err)
	}
	idle := ""
	for _, a := range lb.LoadBalancerAttributes {
		if deref(a.Key) == "idle_timeout.timeout_seconds" {
			idle = deref(a.Value)
		}
	}
	if deref(lb.Type) != "application" || idle != "3600" {
		t.Errorf("load balancer: type %q, idle timeout %q; want an ALB whose idle timeout outlasts HMR sockets (3600)", deref(lb.Type), idle)
	}
	https, err := tpl.GetElasticLoadBalancingV2ListenerWithName("HttpsListener")
	if err != nil {
		t.Fatal(err)
	}
	if deref(https.Protocol) != "HTTPS" || deref(https.Port) != 443 || len(https.Certificates) != 1 || deref(https.Certificates[0].CertificateArn) != testCertificate {
		t.Errorf("HTTPS listener: %s:%d with %+v; want 443 with the PreviewCertificateArn", deref(https.Protocol), deref(https.Port), https.Certificates)
	}
	if len(https.DefaultActions) != 1 || https.DefaultActions[0].Type != "forward" {
		t.Errorf("HTTPS listener actions %+v, want forward to the routers", https.DefaultActions)
	}
	tg, err := tpl.GetElasticLoadBalancingV2TargetGroupWithName("RouterTargetGroup")
	if err != nil {
		t.Fatal(err)
	}
	if deref(tg.HealthCheckPath) != "/health" || deref(tg.TargetType) != "ip" || deref(tg.Port) != 8080 {
		t.Errorf("router target group: health %q, type %q, port %d; want /health on ip targets at 8080", deref(tg.HealthCheckPath), deref(tg.TargetType), deref(tg.Port))
	}

	svc, err := tpl.GetECSServiceWithName("RouterService")
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.LoadBalancers) != 1 || deref(svc.LoadBalancers[0].ContainerName) != "router" || deref(svc.LoadBalancers[0].ContainerPort) != 8080 {
		t.Errorf("router service load balancers %+v, want the router container's 8080", svc.LoadBalancers)
	}
	td, err := tpl.GetECSTaskDefinitionWithName("RouterTaskDefinition")
	if err != nil {
		t.Fatal(err)
	}
	if len(td.ContainerDefinitions) != 1 || !slices.Equal(td.ContainerDefinitions[0].Command, []string{"router"}) {
		t.Fatalf("router task: containers %d, command %v; want one running `worker router`", len(td.ContainerDefinitions), td.ContainerDefinitions[0].Command)
	}
	env := map[string]bool{}
	for _, kv := range td.ContainerDefinitions[0].Environment {
		env[deref(kv.Name)] = true
	}
	for _, name := range []string{"HTTP_ADDR", "PREVIEW_BASE_URL", "PREVIEW_SECRET_SECRET_ID", "LEASE_TABLE", "JOB_QUEUE_URL"} {
		if !env[name] {
			t.Errorf("router task: no %s in its environment", name)
		}
	}
	policy, err := tpl.GetApplicationAutoScalingScalingPolicyWithName("RouterRequestsPolicy")
	if err != nil {
		t.Fatal(err)
	}
	if c := policy.TargetTrackingScalingPolicyConfiguration; c == nil || c.PredefinedMetricSpecification == nil ||
		c.PredefinedMetricSpecification.PredefinedMetricType != "ALBRequestCountPerTarget" {
		t.Errorf("router scaling %+v, want target tracking on ALBRequestCountPerTarget", policy.TargetTrackingScalingPolicyConfiguration)
	}

	// The workers' port: from the routers' group only.
	in := resourceProps(t, raw, "WorkersFromRouters")
	if describeResource(in["GroupId"]) != "GetAtt:TaskSecurityGroup.GroupId" || describeResource(in["SourceSecurityGroupId"]) != "GetAtt:RouterSecurityGroup.GroupId" ||
		fmt.Sprint(in["FromPort"]) != "8080" || fmt.Sprint(in["ToPort"]) != "8080" || in["CidrIp"] != nil {
		t.Errorf("workers' ingress %v, want 8080 from the routers' security group only", in)
	}
	workers, err := tpl.GetECSTaskDefinitionWithName("TaskDefinition")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, kv := range workers.ContainerDefinitions[0].Environment {
		found = found || deref(kv.Name) == "LEASE_TABLE"
	}
	if !found {
		t.Error("the workers' task has no LEASE_TABLE")
	}
	// Every fleet resource exists only with a certificate.
	for _, name := range []string{"LeaseTable", "LeaseTablePolicy", "LoadBalancer", "HttpsListener", "RouterService", "RouterTaskRole", "WorkersFromRouters"} {
		r, _ := section(raw, "Resources")[name].(map[string]any)
		if r["Condition"] != "HasRouter" {
			t.Errorf("%s: condition %v, want HasRouter", name, r["Condition"])
		}
	}
}

// TestTemplateFleetIAM pins the lease table's permissions: the workers
// write only the lease table; the router reads it, sends only to the job
// queue and reads only the preview token key.
func TestTemplateFleetIAM(t *testing.T) {
	raw := rawTemplate(t)
	router, _ := roleGrants(t, raw, "RouterTaskRole")
	wantRouter := map[string][]string{
		"dynamodb:GetItem":              {"GetAtt:LeaseTable.Arn"},
		"sqs:SendMessage":               {"GetAtt:JobQueue.Arn"},
		"secretsmanager:GetSecretValue": {"Ref:PreviewSecret"},
	}
	if len(router) != len(wantRouter) {
		t.Errorf("router role grants %v, want %v", router, wantRouter)
	}
	for a, want := range wantRouter {
		if !slices.Equal(router[a], want) {
			t.Errorf("router role: %s on %q, want %q", a, router[a], want)
		}
	}
	props := resourceProps(t, raw, "LeaseTablePolicy")
	if roles, _ := props["Roles"].([]any); len(roles) != 1 || describeResource(roles[0]) != "Ref:TaskRole" {
		t.Errorf("lease policy roles %v, want the workers' task role", props["Roles"])
	}
	grants := map[string][]string{}
	for _, st := range policyStatements(map[string]any{"p": props["PolicyDocument"]}) {
		for _, a := range st.actions {
			for _, r := range st.resources {
				grants[a] = append(grants[a], describeResource(r))
			}
		}
	}
	wantWorker := map[string][]string{
		"dynamodb:GetItem": {"GetAtt:LeaseTable.Arn"}, "dynamodb:PutItem": {"GetAtt:LeaseTable.Arn"}, "dynamodb:UpdateItem": {"GetAtt:LeaseTable.Arn"},
	}
	if len(grants) != len(wantWorker) {
		t.Errorf("workers' lease grants %v, want %v", grants, wantWorker)
	}
	for a, want := range wantWorker {
		if !slices.Equal(grants[a], want) {
			t.Errorf("workers' lease policy: %s on %q, want %q", a, grants[a], want)
		}
	}
}
