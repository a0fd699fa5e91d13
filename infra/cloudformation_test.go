package infra

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/ecs"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/webordinary/claude-code-astro/jobs"
)

// templateFile is the CloudFormation template, relative to the repository root.
const templateFile = "infra/worker.yaml"

// pseudoParameters are the names Ref and Fn::Sub resolve without a declaration.
var pseudoParameters = []string{
	"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
	"AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}

// unscopedActions are the only actions an Allow statement may grant on
// Resource "*", each with the reason AWS gives no narrower resource.
var unscopedActions = map[string]string{
	"ecr:GetAuthorizationToken": "ECR's registry login token is account-wide: the action supports no resource-level permissions",
}

// openTemplate parses the template with goformation (short-form tags such as
// !Ref, !Sub and !GetAtt included), with its default intrinsic processing:
// Ref to a parameter becomes the parameter's default.
func openTemplate(tb testing.TB) *cloudformation.Template {
	tb.Helper()
	tpl, err := goformation.Open(filepath.Join(repoRoot(tb), templateFile))
	if err != nil {
		tb.Fatalf("goformation: parse %s: %v", templateFile, err)
	}
	return tpl
}

// rawTemplate returns the template as generic JSON values with the intrinsic
// functions kept, short forms turned into long ones by goformation
// (!GetAtt A.B becomes {"Fn::GetAtt": "A.B"}).
func rawTemplate(tb testing.TB) map[string]any {
	tb.Helper()
	data, err := intrinsics.ProcessYAML(readRepoFile(tb, templateFile), &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		tb.Fatalf("goformation: read %s: %v", templateFile, err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		tb.Fatalf("decode %s: %v", templateFile, err)
	}
	return raw
}

// section returns a top-level section of the template as a map.
func section(raw map[string]any, name string) map[string]any {
	m, _ := raw[name].(map[string]any)
	return m
}

// resourceProps returns the Properties of a resource in the raw template.
func resourceProps(tb testing.TB, raw map[string]any, name string) map[string]any {
	tb.Helper()
	res, ok := section(raw, "Resources")[name].(map[string]any)
	if !ok {
		tb.Fatalf("template has no resource %s", name)
	}
	props, _ := res["Properties"].(map[string]any)
	return props
}

// walk calls fn on every value of the tree with its path.
func walk(v any, path string, fn func(path string, v any)) {
	fn(path, v)
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			walk(v[k], path+"/"+k, fn)
		}
	case []any:
		for i, e := range v {
			walk(e, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

// getAttParts splits the argument of Fn::GetAtt ("A.B" or ["A", "B"]).
func getAttParts(arg any) (resource, attr string, ok bool) {
	switch a := arg.(type) {
	case string:
		resource, attr, ok = strings.Cut(a, ".")
		return resource, attr, ok
	case []any:
		if len(a) == 2 {
			r, ok1 := a[0].(string)
			at, ok2 := a[1].(string)
			return r, at, ok1 && ok2
		}
	}
	return "", "", false
}

// subRefs returns the names a Fn::Sub string refers to: ${Name} and
// ${Resource.Attribute}; ${!Literal} is not a reference.
func subRefs(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`\$\{([^}]*)\}`).FindAllStringSubmatch(s, -1) {
		if !strings.HasPrefix(m[1], "!") {
			out = append(out, strings.TrimSpace(m[1]))
		}
	}
	return out
}

// getAttributes are the Fn::GetAtt attributes of the resource types the
// template uses (from each type's CloudFormation reference, "Return values").
var getAttributes = map[string][]string{
	"AWS::SQS::Queue":          {"Arn", "QueueName", "QueueUrl"},
	"AWS::EC2::SecurityGroup":  {"GroupId", "VpcId"},
	"AWS::IAM::Role":           {"Arn", "RoleId"},
	"AWS::ECS::Cluster":        {"Arn"},
	"AWS::ECS::TaskDefinition": {"TaskDefinitionArn"},
	"AWS::Logs::LogGroup":      {"Arn"},
	"AWS::EFS::FileSystem":     {"Arn", "FileSystemId"},
	"AWS::EFS::AccessPoint":    {"Arn", "AccessPointId"},
	"AWS::EFS::MountTarget":    {"IpAddress", "Id"},
	"AWS::ECS::Service":        {"Name", "ServiceArn"},
	"AWS::DynamoDB::Table":     {"Arn", "StreamArn"},
	"AWS::ElasticLoadBalancingV2::LoadBalancer": {"CanonicalHostedZoneID", "DNSName", "LoadBalancerArn", "LoadBalancerFullName",
		"LoadBalancerName", "SecurityGroups"},
	"AWS::ElasticLoadBalancingV2::TargetGroup": {"LoadBalancerArns", "TargetGroupArn", "TargetGroupFullName", "TargetGroupName"},
}

// TestTemplateReferencesResolve checks every Ref, Fn::GetAtt, Fn::Sub
// variable, Condition and DependsOn names something the template declares, and
// that every parameter and condition is used.
func TestTemplateReferencesResolve(t *testing.T) {
	raw := rawTemplate(t)
	params := section(raw, "Parameters")
	resources := section(raw, "Resources")
	conditions := section(raw, "Conditions")
	if len(resources) == 0 {
		t.Fatal("template has no resources")
	}
	resourceType := func(name string) string {
		r, _ := resources[name].(map[string]any)
		typ, _ := r["Type"].(string)
		return typ
	}
	used := map[string]bool{}

	checkName := func(path, name string) {
		used[name] = true
		if _, ok := params[name]; ok {
			return
		}
		if _, ok := resources[name]; ok {
			return
		}
		if !slices.Contains(pseudoParameters, name) {
			t.Errorf("%s: %q is no parameter, resource or pseudo parameter", path, name)
		}
	}
	checkGetAtt := func(path, res, attr string) {
		used[res] = true
		typ := resourceType(res)
		if typ == "" {
			t.Errorf("%s: Fn::GetAtt of %q, which is no resource", path, res)
			return
		}
		attrs, known := getAttributes[typ]
		if !known {
			t.Errorf("%s: Fn::GetAtt on %s: add the attributes of type %s to getAttributes", path, res, typ)
		} else if !slices.Contains(attrs, attr) {
			t.Errorf("%s: %s (%s) has no attribute %q (has %q)", path, res, typ, attr, attrs)
		}
	}
	checkCondition := func(path string, v any) {
		name, ok := v.(string)
		if _, declared := conditions[name]; !ok || !declared {
			t.Errorf("%s: condition %v is not declared", path, v)
		}
		used["condition:"+name] = true
	}

	walk(raw, "", func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		if arg, ok := m["Ref"]; ok && len(m) == 1 {
			name, isString := arg.(string)
			if !isString {
				t.Errorf("%s: Ref of a non-string %v", path, arg)
				return
			}
			checkName(path, name)
		}
		if arg, ok := m["Fn::GetAtt"]; ok && len(m) == 1 {
			res, attr, ok := getAttParts(arg)
			if !ok {
				t.Errorf("%s: malformed Fn::GetAtt %v", path, arg)
				return
			}
			checkGetAtt(path, res, attr)
		}
		if arg, ok := m["Fn::Sub"]; ok && len(m) == 1 {
			var tmpl string
			vars := map[string]any{}
			switch a := arg.(type) {
			case string:
				tmpl = a
			case []any:
				if len(a) == 2 {
					tmpl, _ = a[0].(string)
					vars, _ = a[1].(map[string]any)
				}
			}
			if tmpl == "" {
				t.Errorf("%s: malformed Fn::Sub %v", path, arg)
				return
			}
			for _, ref := range subRefs(tmpl) {
				if _, ok := vars[ref]; ok {
					continue
				}
				if res, attr, ok := strings.Cut(ref, "."); ok && !slices.Contains(pseudoParameters, ref) {
					checkGetAtt(path+" ${"+ref+"}", res, attr)
					continue
				}
				checkName(path+" ${"+ref+"}", ref)
			}
		}
		if arg, ok := m["Fn::If"]; ok && len(m) == 1 {
			a, _ := arg.([]any)
			if len(a) != 3 {
				t.Errorf("%s: Fn::If takes 3 arguments, got %v", path, arg)
				return
			}
			checkCondition(path, a[0])
		}
		if arg, ok := m["Condition"]; ok && len(m) == 1 {
			checkCondition(path, arg) // the Condition function inside conditions
		}
	})

	for name, r := range resources {
		res, _ := r.(map[string]any)
		if cond, ok := res["Condition"]; ok {
			checkCondition("Resources/"+name+"/Condition", cond)
		}
		var deps []any
		switch d := res["DependsOn"].(type) {
		case string:
			deps = []any{d}
		case []any:
			deps = d
		}
		for _, d := range deps {
			if name, _ := d.(string); resourceType(name) == "" {
				t.Errorf("Resources/%s/DependsOn: %v is no resource", name, d)
			}
		}
	}
	for name := range params {
		if !used[name] {
			t.Errorf("parameter %s is never used", name)
		}
	}
	for name := range conditions {
		if !used["condition:"+name] {
			t.Errorf("condition %s is never used", name)
		}
	}
}

// TestTemplateProperties checks every property name in the template against
// goformation's resource types, generated from AWS's CloudFormation resource
// specification: a misspelt property fails here, not at deploy time.
func TestTemplateProperties(t *testing.T) {
	tpl := openTemplate(t)
	raw := rawTemplate(t)
	resources := section(raw, "Resources")
	resourceKeys := []string{"Type", "Properties", "DependsOn", "Condition", "DeletionPolicy", "UpdateReplacePolicy", "Metadata"}
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		res, _ := resources[name].(map[string]any)
		for key := range res {
			if !slices.Contains(resourceKeys, key) {
				t.Errorf("Resources/%s: unknown attribute %q", name, key)
			}
		}
		typed, ok := tpl.Resources[name]
		if !ok {
			t.Errorf("goformation did not load resource %s", name)
			continue
		}
		if got := typed.AWSCloudFormationType(); got != res["Type"] {
			t.Errorf("Resources/%s: goformation type %s, template says %v", name, got, res["Type"])
		}
		for _, p := range unknownProperties(res["Properties"], reflect.TypeOf(typed), "Resources/"+name+"/Properties") {
			t.Errorf("%s: no such property in %s", p, typed.AWSCloudFormationType())
		}
	}

	paramKeys := []string{"Type", "Default", "Description", "AllowedValues", "AllowedPattern", "MinValue", "MaxValue", "MinLength", "MaxLength", "NoEcho", "ConstraintDescription"}
	for name, p := range section(raw, "Parameters") {
		pm, _ := p.(map[string]any)
		for key := range pm {
			if !slices.Contains(paramKeys, key) {
				t.Errorf("Parameters/%s: unknown attribute %q", name, key)
			}
		}
	}
}

// unknownProperties returns the paths of the keys in v that type typ (a
// goformation struct, followed through pointers, slices and nested structs)
// does not declare. Intrinsic function values are not descended into.
func unknownProperties(v any, typ reflect.Type, path string) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if isIntrinsic(v) {
		return nil
	}
	var out []string
	switch typ.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := map[string]reflect.Type{}
		for f := range typ.Fields() {
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = f.Type
			}
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, ok := fields[k]
			if !ok {
				out = append(out, path+"/"+k)
				continue
			}
			out = append(out, unknownProperties(m[k], ft, path+"/"+k)...)
		}
	case reflect.Slice:
		if s, ok := v.([]any); ok {
			for i, e := range s {
				out = append(out, unknownProperties(e, typ.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return out
}

// isIntrinsic reports whether v is an intrinsic function call ({"Ref": ...} or {"Fn::X": ...}).
func isIntrinsic(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	for k := range m {
		return k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::")
	}
	return false
}

// TestTemplateParameterDefaults checks each parameter default against its own constraints.
func TestTemplateParameterDefaults(t *testing.T) {
	for name, p := range section(rawTemplate(t), "Parameters") {
		pm, _ := p.(map[string]any)
		def, ok := pm["Default"]
		if !ok {
			continue
		}
		s := fmt.Sprint(def)
		if pat, ok := pm["AllowedPattern"].(string); ok && !regexp.MustCompile(pat).MatchString(s) {
			t.Errorf("parameter %s: default %q does not match AllowedPattern %s", name, s, pat)
		}
		if vals, ok := pm["AllowedValues"].([]any); ok && !slices.ContainsFunc(vals, func(v any) bool { return fmt.Sprint(v) == s }) {
			t.Errorf("parameter %s: default %q not in AllowedValues %v", name, s, vals)
		}
		if minv, ok := pm["MinValue"]; ok {
			n, err := strconv.ParseFloat(s, 64)
			if m, _ := strconv.ParseFloat(fmt.Sprint(minv), 64); err != nil || n < m {
				t.Errorf("parameter %s: default %q below MinValue %v", name, s, minv)
			}
		}
	}
}

// statement is one IAM policy statement, with where it was found.
type statement struct {
	path      string
	effect    string
	actions   []string
	resources []any
	condition map[string]any
	raw       map[string]any
}

// stringsOrOne returns a string or a list of strings as a list.
func stringsOrOne(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// policyStatements returns every statement of every policy document in the
// template (role policies, trust policies, resource policies).
func policyStatements(raw map[string]any) []statement {
	var out []statement
	walk(raw, "", func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		stmts, ok := m["Statement"].([]any)
		if !ok {
			return
		}
		for i, s := range stmts {
			sm, _ := s.(map[string]any)
			st := statement{path: fmt.Sprintf("%s/Statement[%d]", path, i), raw: sm}
			st.effect, _ = sm["Effect"].(string)
			st.actions = stringsOrOne(sm["Action"])
			switch r := sm["Resource"].(type) {
			case []any:
				st.resources = r
			case nil:
			default:
				st.resources = []any{r}
			}
			st.condition, _ = sm["Condition"].(map[string]any)
			out = append(out, st)
		}
	})
	return out
}

// TestTemplateIAMLeastPrivilege checks that no Allow grants "*" resources
// except for unscopedActions, no Allow uses wildcards in actions or the Not*
// forms, and every Allow names its resources.
func TestTemplateIAMLeastPrivilege(t *testing.T) {
	stmts := policyStatements(rawTemplate(t))
	if len(stmts) == 0 {
		t.Fatal("template has no IAM policy statements")
	}
	for _, st := range stmts {
		if st.effect != "Allow" {
			continue
		}
		for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
			if _, ok := st.raw[k]; ok {
				t.Errorf("%s: Allow with %s", st.path, k)
			}
		}
		if _, trust := st.raw["Principal"]; trust && len(st.resources) == 0 {
			continue // a trust policy (AssumeRolePolicyDocument)
		}
		if len(st.resources) == 0 {
			t.Errorf("%s: Allow without Resource", st.path)
		}
		for _, a := range st.actions {
			if strings.Contains(a, "*") {
				t.Errorf("%s: wildcard action %q", st.path, a)
			}
		}
		if !slices.Contains(st.resources, any("*")) {
			continue
		}
		for _, a := range st.actions {
			if _, ok := unscopedActions[a]; !ok {
				t.Errorf(`%s: %s granted on Resource "*"; scope it, or add it to unscopedActions with the reason it cannot be`, st.path, a)
			}
		}
	}
}

// describeResource turns a policy Resource entry into a short comparable form:
// "GetAtt:JobQueue.Arn", "Ref:Param", "Sub:<template>", or the literal.
func describeResource(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprint(v)
	}
	if r, ok := m["Ref"].(string); ok {
		return "Ref:" + r
	}
	if a, ok := m["Fn::GetAtt"]; ok {
		res, attr, _ := getAttParts(a)
		return "GetAtt:" + res + "." + attr
	}
	if s, ok := m["Fn::Sub"].(string); ok {
		return "Sub:" + s
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// roleGrants returns, for an IAM role of the template, each allowed action
// with the resources it is allowed on, and the statements by action.
func roleGrants(t *testing.T, raw map[string]any, role string) (map[string][]string, map[string]statement) {
	t.Helper()
	grants := map[string][]string{}
	byAction := map[string]statement{}
	props := resourceProps(t, raw, role)
	for _, st := range policyStatements(map[string]any{"Policies": props["Policies"]}) {
		if st.effect != "Allow" {
			continue
		}
		for _, a := range st.actions {
			for _, r := range st.resources {
				grants[a] = append(grants[a], describeResource(r))
			}
			byAction[a] = st
		}
	}
	for a := range grants {
		sort.Strings(grants[a])
	}
	return grants, byAction
}

// TestTemplateTaskRole pins the worker's permissions: exactly these actions on
// exactly these resources, nothing else.
func TestTemplateTaskRole(t *testing.T) {
	raw := rawTemplate(t)
	grants, byAction := roleGrants(t, raw, "TaskRole")
	want := map[string][]string{
		"sqs:ReceiveMessage":            {"GetAtt:JobQueue.Arn"},
		"sqs:DeleteMessage":             {"GetAtt:JobQueue.Arn"},
		"sqs:ChangeMessageVisibility":   {"GetAtt:JobQueue.Arn"},
		"sqs:GetQueueAttributes":        {"GetAtt:JobQueue.Arn", "GetAtt:ResponseQueue.Arn"},
		"sqs:SendMessage":               {"GetAtt:ResponseQueue.Arn"},
		"secretsmanager:GetSecretValue": {"Ref:AnthropicApiKeySecretArn", "Ref:GithubTokenSecretArn", "Ref:PreviewSecret"},
		"elasticfilesystem:ClientMount": {"GetAtt:FileSystem.Arn"},
		"elasticfilesystem:ClientWrite": {"GetAtt:FileSystem.Arn"},
		// root over NFS: the worker gives each tenant its directories (chown)
		"elasticfilesystem:ClientRootAccess": {"GetAtt:FileSystem.Arn"},
	}
	for _, a := range slices.Sorted(maps.Keys(want)) {
		if got := grants[a]; !slices.Equal(got, want[a]) {
			t.Errorf("task role: %s on %q, want %q", a, got, want[a])
		}
	}
	for a := range grants {
		if _, ok := want[a]; !ok {
			t.Errorf("task role: unexpected grant %s on %q", a, grants[a])
		}
	}

	tests := []struct {
		action, operator, key, value string
	}{
		{"elasticfilesystem:ClientMount", "StringEquals", "elasticfilesystem:AccessPointArn", "GetAtt:WorkspaceAccessPoint.Arn"},
	}
	for _, tt := range tests {
		cond, _ := byAction[tt.action].condition[tt.operator].(map[string]any)
		if got := describeResource(cond[tt.key]); got != tt.value {
			t.Errorf("task role: %s condition %s %s = %s, want %s", tt.action, tt.operator, tt.key, got, tt.value)
		}
	}
}

func TestTemplateExecutionRole(t *testing.T) {
	grants, _ := roleGrants(t, rawTemplate(t), "ExecutionRole")
	want := map[string][]string{
		"ecr:GetAuthorizationToken":       {"*"},
		"ecr:BatchCheckLayerAvailability": {"Sub:arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageRepositoryName}"},
		"ecr:GetDownloadUrlForLayer":      {"Sub:arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageRepositoryName}"},
		"ecr:BatchGetImage":               {"Sub:arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageRepositoryName}"},
		"logs:CreateLogStream":            {"GetAtt:LogGroup.Arn"},
		"logs:PutLogEvents":               {"GetAtt:LogGroup.Arn"},
	}
	if !reflect.DeepEqual(grants, want) {
		t.Errorf("execution role grants:\n got %v\nwant %v", grants, want)
	}
}

// TestTemplateTaskDefinition checks the Fargate task definition against what
// the image and the worker need.
func TestTemplateTaskDefinition(t *testing.T) {
	tpl := openTemplate(t)
	raw := rawTemplate(t)
	td, err := tpl.GetECSTaskDefinitionWithName("TaskDefinition")
	if err != nil {
		t.Fatalf("template: %v", err)
	}
	if !slices.Equal(td.RequiresCompatibilities, []string{"FARGATE"}) || deref(td.NetworkMode) != "awsvpc" {
		t.Errorf("task definition: compatibilities %v, network mode %q, want FARGATE and awsvpc", td.RequiresCompatibilities, deref(td.NetworkMode))
	}
	// Defaults of TaskCpu and TaskMemory (goformation resolves Ref to a parameter's default).
	cpu, _ := strconv.Atoi(deref(td.Cpu))
	mem, _ := strconv.Atoi(deref(td.Memory))
	if !fargateSize(cpu, mem) {
		t.Errorf("task definition: cpu %d, memory %d MiB is no Fargate size", cpu, mem)
	}
	if mem < 3072 {
		t.Errorf("task definition: memory %d MiB, want headroom over the 2 GB peak of worker, Astro and Claude Code", mem)
	}

	if len(td.ContainerDefinitions) != 1 {
		t.Fatalf("task definition has %d containers, want 1", len(td.ContainerDefinitions))
	}
	c := td.ContainerDefinitions[0]

	hc := parseDockerfile(t).final()
	var imageHealth []string
	for _, h := range commands[*instructions.HealthCheckCommand](hc) {
		imageHealth = h.Health.Test
	}
	if c.HealthCheck == nil || !slices.Equal(c.HealthCheck.Command, imageHealth) {
		t.Errorf("container health check %v, want the image's HEALTHCHECK %q", c.HealthCheck, imageHealth)
	}
	if c.StopTimeout == nil || *c.StopTimeout < 30 || *c.StopTimeout > 120 {
		t.Errorf("container stopTimeout %v, want 30..120 s (the worker exits within %s of SIGTERM, jobs.ShutdownBudget; Fargate allows up to 120)", c.StopTimeout, jobs.ShutdownBudget)
	}
	if c.LinuxParameters == nil || c.LinuxParameters.InitProcessEnabled == nil || !*c.LinuxParameters.InitProcessEnabled {
		t.Error("container linuxParameters.initProcessEnabled is not true")
	}
	// The worker starts as root and confines itself: it needs SETUID,
	// SETGID, CHOWN, FOWNER, KILL and (to drop the rest from its bounding
	// set) SETPCAP of Docker's defaults; the task drops the others already.
	if c.User == nil || *c.User != "0" {
		t.Errorf("container user %v, want 0: the worker starts as root and confines itself", c.User)
	}
	var dropped []string
	if c.LinuxParameters != nil && c.LinuxParameters.Capabilities != nil {
		dropped = c.LinuxParameters.Capabilities.Drop
	}
	for _, need := range []string{"SETUID", "SETGID", "CHOWN", "FOWNER", "KILL", "SETPCAP", "ALL"} {
		if slices.Contains(dropped, need) {
			t.Errorf("the task drops %s, which the worker needs", need)
		}
	}
	for _, never := range []string{"NET_RAW", "MKNOD", "DAC_OVERRIDE", "SETFCAP"} {
		if !slices.Contains(dropped, never) {
			t.Errorf("the task keeps %s, which the worker never needs", never)
		}
	}
	var port8080 bool
	for _, p := range c.PortMappings {
		port8080 = port8080 || (p.ContainerPort != nil && *p.ContainerPort == 8080)
	}
	if !port8080 {
		t.Error("container does not map port 8080")
	}
	if c.LogConfiguration == nil || c.LogConfiguration.LogDriver != "awslogs" {
		t.Error("container does not log with awslogs")
	}
	if len(c.Secrets) != 0 {
		t.Errorf("container has a secrets block %v: the worker reads its secrets by id, keeping them out of the environment", c.Secrets)
	}

	names := map[string]bool{}
	for _, kv := range c.Environment {
		names[deref(kv.Name)] = true
	}
	for _, want := range []string{"JOB_QUEUE_URL", "RESPONSE_QUEUE_URL", "ANTHROPIC_API_KEY_SECRET_ID", "GITHUB_TOKEN_SECRET_ID", "AWS_REGION", "WORKSPACE_PATH"} {
		if !names[want] {
			t.Errorf("container environment lacks %s", want)
		}
	}
	for _, secret := range []string{"ANTHROPIC_API_KEY", "GITHUB_TOKEN", "AWS_ENDPOINT_URL"} {
		if names[secret] {
			t.Errorf("container environment sets %s", secret)
		}
	}

	// The EFS volume, from the raw template (its ids are references).
	props := resourceProps(t, raw, "TaskDefinition")
	vols, _ := props["Volumes"].([]any)
	var efs map[string]any
	for _, v := range vols {
		vm, _ := v.(map[string]any)
		if vm["Name"] == mountSource(c.MountPoints, "/workspace") {
			efs, _ = vm["EFSVolumeConfiguration"].(map[string]any)
		}
	}
	if efs == nil {
		t.Fatal("no EFS volume mounted at /workspace")
	}
	auth, _ := efs["AuthorizationConfig"].(map[string]any)
	for key, want := range map[string]string{
		"FilesystemId":      "Ref:FileSystem",
		"TransitEncryption": "ENABLED",
	} {
		if got := describeResource(efs[key]); got != want {
			t.Errorf("EFS volume %s = %s, want %s", key, got, want)
		}
	}
	for key, want := range map[string]string{"AccessPointId": "Ref:WorkspaceAccessPoint", "IAM": "ENABLED"} {
		if got := describeResource(auth[key]); got != want {
			t.Errorf("EFS volume AuthorizationConfig.%s = %s, want %s", key, got, want)
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// mountSource returns the volume mounted at a container path.
func mountSource(mounts []ecs.TaskDefinition_MountPoint, containerPath string) string {
	for _, m := range mounts {
		if deref(m.ContainerPath) == containerPath {
			return deref(m.SourceVolume)
		}
	}
	return ""
}

// fargateSize reports whether cpu units and memory MiB are a valid Fargate pair.
func fargateSize(cpu, mem int) bool {
	const gb = 1024
	switch cpu {
	case 256:
		return mem == 512 || mem == gb || mem == 2*gb
	case 512:
		return mem >= gb && mem <= 4*gb && mem%gb == 0
	case 1024:
		return mem >= 2*gb && mem <= 8*gb && mem%gb == 0
	case 2048:
		return mem >= 4*gb && mem <= 16*gb && mem%gb == 0
	case 4096:
		return mem >= 8*gb && mem <= 30*gb && mem%gb == 0
	}
	return false
}

// TestTemplateWorkspace checks the EFS side: encrypted, one mount target in
// each of two subnets, NFS reachable from the task security group only, and
// an access point for the image's user.
func TestTemplateWorkspace(t *testing.T) {
	raw := rawTemplate(t)
	if fs := resourceProps(t, raw, "FileSystem"); fs["Encrypted"] != true {
		t.Error("EFS file system is not encrypted at rest")
	}
	var subnets []string
	for name, r := range section(raw, "Resources") {
		if rm, _ := r.(map[string]any); rm["Type"] == "AWS::EFS::MountTarget" {
			p := resourceProps(t, raw, name)
			b, _ := json.Marshal(p["SubnetId"])
			subnets = append(subnets, string(b))
			if got := describeResource(p["FileSystemId"]); got != "Ref:FileSystem" {
				t.Errorf("%s: FileSystemId %s", name, got)
			}
		}
	}
	sort.Strings(subnets)
	want := []string{`{"Fn::Select":[0,{"Ref":"Subnets"}]}`, `{"Fn::Select":[1,{"Ref":"Subnets"}]}`}
	if !slices.Equal(subnets, want) {
		t.Errorf("EFS mount targets in %v, want %v", subnets, want)
	}

	if _, ok := resourceProps(t, raw, "EfsSecurityGroup")["SecurityGroupIngress"]; ok {
		t.Error("EFS security group has inline ingress rules")
	}
	var ingress []map[string]any
	for name, r := range section(raw, "Resources") {
		if rm, _ := r.(map[string]any); rm["Type"] == "AWS::EC2::SecurityGroupIngress" {
			if p := resourceProps(t, raw, name); describeResource(p["GroupId"]) == "GetAtt:EfsSecurityGroup.GroupId" {
				ingress = append(ingress, p)
			}
		}
	}
	if len(ingress) != 1 {
		t.Fatalf("EFS security group has %d ingress rules, want 1 (NFS from the tasks)", len(ingress))
	}
	rule := ingress[0]
	if fmt.Sprint(rule["FromPort"]) != "2049" || fmt.Sprint(rule["ToPort"]) != "2049" || rule["IpProtocol"] != "tcp" ||
		describeResource(rule["SourceSecurityGroupId"]) != "GetAtt:TaskSecurityGroup.GroupId" || rule["CidrIp"] != nil {
		t.Errorf("EFS ingress %v, want tcp 2049 from TaskSecurityGroup only", rule)
	}

	// No forced POSIX user (it would put every tenant under one uid); the
	// root is root's, 0711: tenants pass through it, nobody lists it.
	ap := resourceProps(t, raw, "WorkspaceAccessPoint")
	if posix, ok := ap["PosixUser"]; ok {
		t.Errorf("access point forces the POSIX user %v: every tenant would share one uid", posix)
	}
	root, _ := ap["RootDirectory"].(map[string]any)
	creation, _ := root["CreationInfo"].(map[string]any)
	if fmt.Sprint(creation["OwnerUid"]) != "0" || fmt.Sprint(creation["OwnerGid"]) != "0" || fmt.Sprint(creation["Permissions"]) != "0711" {
		t.Errorf("access point creates the root as %v, want 0:0 mode 0711", creation)
	}
}

// TestTemplateQueues checks the queues: FIFO job queue with content-based
// deduplication and a redrive to a FIFO dead-letter queue, FIFO response queue.
func TestTemplateQueues(t *testing.T) {
	raw := rawTemplate(t)
	job := resourceProps(t, raw, "JobQueue")
	if job["FifoQueue"] != true || job["ContentBasedDeduplication"] != true {
		t.Errorf("job queue: FifoQueue %v, ContentBasedDeduplication %v, want both true", job["FifoQueue"], job["ContentBasedDeduplication"])
	}
	for _, q := range []string{"JobQueue", "ResponseQueue"} {
		p := resourceProps(t, raw, q)
		if p["FifoQueue"] != true {
			t.Errorf("%s is not FIFO", q)
		}
		redrive, _ := p["RedrivePolicy"].(map[string]any)
		target := describeResource(redrive["deadLetterTargetArn"])
		dlq, ok := strings.CutPrefix(target, "GetAtt:")
		dlq, _ = strings.CutSuffix(dlq, ".Arn")
		if !ok || resourceProps(t, raw, dlq)["FifoQueue"] != true {
			t.Errorf("%s: dead-letter target %s, want the Arn of a FIFO queue of this template", q, target)
		}
		if redrive["maxReceiveCount"] == nil {
			t.Errorf("%s: no maxReceiveCount", q)
		}
	}
}

func TestTemplateOutputs(t *testing.T) {
	outputs := section(rawTemplate(t), "Outputs")
	for _, name := range []string{
		"JobQueueUrl", "JobQueueArn", "ResponseQueueUrl", "ResponseQueueArn",
		"ClusterName", "ClusterArn", "TaskDefinitionArn", "TaskSecurityGroupId", "Subnets",
	} {
		o, _ := outputs[name].(map[string]any)
		if o["Value"] == nil {
			t.Errorf("output %s missing", name)
		}
	}
}

// TestTemplateSecurityGroupRules checks that no security group has rules of
// one direction both inline and as standalone resources: CloudFormation
// reconciles the inline list on update and would drop the standalone rules.
func TestTemplateSecurityGroupRules(t *testing.T) {
	raw := rawTemplate(t)
	resources := section(raw, "Resources")
	standalone := map[string]string{"AWS::EC2::SecurityGroupIngress": "SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress": "SecurityGroupEgress"}
	for name, r := range resources {
		rm, _ := r.(map[string]any)
		inline, ok := standalone[fmt.Sprint(rm["Type"])]
		if !ok {
			continue
		}
		group, ok := strings.CutPrefix(describeResource(resourceProps(t, raw, name)["GroupId"]), "GetAtt:")
		group, _ = strings.CutSuffix(group, ".GroupId")
		if !ok {
			continue
		}
		if _, mixed := resourceProps(t, raw, group)[inline]; mixed {
			t.Errorf("%s adds a rule to %s, which also has inline %s", name, group, inline)
		}
	}
}

// TestTemplateNoDependencyCycle checks the resources' references (Ref,
// Fn::GetAtt, Fn::Sub, DependsOn) form no cycle, which CloudFormation rejects
// as "Circular dependency between resources".
func TestTemplateNoDependencyCycle(t *testing.T) {
	raw := rawTemplate(t)
	resources := section(raw, "Resources")
	deps := map[string]map[string]bool{}
	for name, r := range resources {
		deps[name] = map[string]bool{}
		add := func(target string) {
			if _, ok := resources[target]; ok {
				deps[name][target] = true
			}
		}
		walk(r, "", func(_ string, v any) {
			m, ok := v.(map[string]any)
			if !ok || len(m) != 1 {
				return
			}
			if ref, ok := m["Ref"].(string); ok {
				add(ref)
			}
			if a, ok := m["Fn::GetAtt"]; ok {
				res, _, _ := getAttParts(a)
				add(res)
			}
			if s, ok := m["Fn::Sub"]; ok {
				tmpl, _ := s.(string)
				if l, ok := s.([]any); ok && len(l) > 0 {
					tmpl, _ = l[0].(string)
				}
				for _, ref := range subRefs(tmpl) {
					res, _, _ := strings.Cut(ref, ".")
					add(res)
				}
			}
		})
		rm, _ := r.(map[string]any)
		for _, d := range stringsOrOne(rm["DependsOn"]) {
			add(d)
		}
	}

	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(n string) bool
	visit = func(n string) bool {
		switch state[n] {
		case visiting:
			i := slices.Index(stack, n)
			t.Errorf("dependency cycle: %s -> %s", strings.Join(stack[i:], " -> "), n)
			return false
		case done:
			return true
		}
		state[n] = visiting
		stack = append(stack, n)
		for _, d := range slices.Sorted(maps.Keys(deps[n])) {
			if !visit(d) {
				return false
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return true
	}
	for _, n := range slices.Sorted(maps.Keys(deps)) {
		if !visit(n) {
			return
		}
	}
}
