package infra

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestTemplateFleet checks the default deployment: an ECS service that
// Application Auto Scaling takes from 0 to MaxTasks, a step policy on an
// alarm for 0 -> 1, target tracking on jobs per task above that, and each
// deployment mode's own ECS permission (scale-in protection in a service,
// StopTask for standalone tasks only).
func TestTemplateFleet(t *testing.T) {
	tpl := openTemplate(t)
	raw := rawTemplate(t)
	resources := section(raw, "Resources")
	params := section(raw, "Parameters")
	conditionOf := func(name string) string {
		r, _ := resources[name].(map[string]any)
		c, _ := r["Condition"].(string)
		return c
	}

	mode, _ := params["DeploymentMode"].(map[string]any)
	if mode["Default"] != "service" {
		t.Errorf("DeploymentMode defaults to %v, want service", mode["Default"])
	}
	for _, name := range []string{"Service", "ScalableTarget", "ScaleFromZeroPolicy", "JobWaitingWithNoTaskAlarm", "BacklogPerTaskPolicy", "ProtectOwnTaskPolicy"} {
		if c := conditionOf(name); c != "IsService" {
			t.Errorf("%s has condition %q, want IsService", name, c)
		}
	}
	if c := conditionOf("StopOwnTaskPolicy"); c != "IsStandalone" {
		t.Errorf("StopOwnTaskPolicy has condition %q, want IsStandalone", c)
	}

	// The service.
	svc, err := tpl.GetECSServiceWithName("Service")
	if err != nil {
		t.Fatal(err)
	}
	if svc.DesiredCount == nil || *svc.DesiredCount != 0 {
		t.Errorf("service desired count %v, want 0: the scaler owns it", svc.DesiredCount)
	}
	sp := resourceProps(t, raw, "Service")
	if got := describeResource(sp["Cluster"]) + " " + describeResource(sp["TaskDefinition"]); got != "Ref:Cluster Ref:TaskDefinition" {
		t.Errorf("service runs %s, want the cluster's task definition", got)
	}
	strategy, _ := sp["CapacityProviderStrategy"].([]any)
	if len(strategy) != 1 || describeResource(strategy[0].(map[string]any)["CapacityProvider"]) != "Ref:CapacityProvider" {
		t.Errorf("service capacity provider strategy %v, want the CapacityProvider parameter", strategy)
	}
	cp, _ := params["CapacityProvider"].(map[string]any)
	if allowed, _ := cp["AllowedValues"].([]any); !slices.Equal(allowed, []any{"FARGATE", "FARGATE_SPOT"}) || cp["Default"] != "FARGATE" {
		t.Errorf("CapacityProvider %v, want FARGATE (default) or FARGATE_SPOT", cp)
	}

	// The scalable target: the service's desired count, 0 to MaxTasks.
	target, err := tpl.GetApplicationAutoScalingScalableTargetWithName("ScalableTarget")
	if err != nil {
		t.Fatal(err)
	}
	tp := resourceProps(t, raw, "ScalableTarget")
	if target.MinCapacity != 0 || describeResource(tp["MaxCapacity"]) != "Ref:MaxTasks" ||
		target.ScalableDimension != "ecs:service:DesiredCount" || target.ServiceNamespace != "ecs" ||
		describeResource(tp["ResourceId"]) != "Sub:service/${Cluster}/${Service.Name}" {
		t.Errorf("scalable target %+v (raw %v), want the service's desired count from 0 to MaxTasks", target, tp)
	}

	// 0 -> 1: a step of +1 on an alarm that fires when a job waits and no
	// task runs.
	step, err := tpl.GetApplicationAutoScalingScalingPolicyWithName("ScaleFromZeroPolicy")
	if err != nil {
		t.Fatal(err)
	}
	if step.PolicyType != "StepScaling" || step.StepScalingPolicyConfiguration == nil {
		t.Fatalf("ScaleFromZeroPolicy is %s, want StepScaling", step.PolicyType)
	}
	sc := step.StepScalingPolicyConfiguration
	if deref(sc.AdjustmentType) != "ChangeInCapacity" || len(sc.StepAdjustments) != 1 || sc.StepAdjustments[0].ScalingAdjustment != 1 ||
		sc.StepAdjustments[0].MetricIntervalLowerBound == nil || *sc.StepAdjustments[0].MetricIntervalLowerBound != 0 {
		t.Errorf("ScaleFromZeroPolicy steps %+v, want one step of +1 from 0", sc)
	}
	if got := describeResource(resourceProps(t, raw, "ScaleFromZeroPolicy")["ScalingTargetId"]); got != "Ref:ScalableTarget" {
		t.Errorf("ScaleFromZeroPolicy targets %s", got)
	}
	alarm, err := tpl.GetCloudWatchAlarmWithName("JobWaitingWithNoTaskAlarm")
	if err != nil {
		t.Fatal(err)
	}
	ap := resourceProps(t, raw, "JobWaitingWithNoTaskAlarm")
	actions, _ := ap["AlarmActions"].([]any)
	if len(actions) != 1 || describeResource(actions[0]) != "Ref:ScaleFromZeroPolicy" {
		t.Errorf("alarm actions %v, want the step policy", actions)
	}
	if alarm.ComparisonOperator != "GreaterThanOrEqualToThreshold" || deref(alarm.Threshold) != 1 || alarm.EvaluationPeriods != 1 {
		t.Errorf("alarm %s %v over %v periods, want >= 1 at once", alarm.ComparisonOperator, deref(alarm.Threshold), alarm.EvaluationPeriods)
	}
	alarmMetrics, _ := ap["Metrics"].([]any)
	checkMetricMath(t, "JobWaitingWithNoTaskAlarm", alarmMetrics, map[string]string{
		"visible": "AWS/SQS ApproximateNumberOfMessagesVisible QueueName=GetAtt:JobQueue.QueueName",
		"tasks":   "ECS/ContainerInsights RunningTaskCount ClusterName=Ref:Cluster ServiceName=GetAtt:Service.Name",
	})

	// 1..N: target tracking on jobs per task, aimed at MAX_CONCURRENT_USERS.
	tt, err := tpl.GetApplicationAutoScalingScalingPolicyWithName("BacklogPerTaskPolicy")
	if err != nil {
		t.Fatal(err)
	}
	if tt.PolicyType != "TargetTrackingScaling" || tt.TargetTrackingScalingPolicyConfiguration == nil {
		t.Fatalf("BacklogPerTaskPolicy is %s, want TargetTrackingScaling", tt.PolicyType)
	}
	ttc := resourceProps(t, raw, "BacklogPerTaskPolicy")["TargetTrackingScalingPolicyConfiguration"].(map[string]any)
	if got := describeResource(ttc["TargetValue"]); got != "Ref:MaxConcurrentUsers" {
		t.Errorf("target value %s, want MAX_CONCURRENT_USERS per task", got)
	}
	if got := describeResource(ttc["ScaleInCooldown"]); got != "Ref:ScaleInCooldownSeconds" {
		t.Errorf("scale-in cooldown %s, want the quiet period parameter", got)
	}
	if tt.TargetTrackingScalingPolicyConfiguration.DisableScaleIn != nil && *tt.TargetTrackingScalingPolicyConfiguration.DisableScaleIn {
		t.Error("target tracking does not scale in")
	}
	cms, _ := ttc["CustomizedMetricSpecification"].(map[string]any)
	ttMetrics, _ := cms["Metrics"].([]any)
	checkMetricMath(t, "BacklogPerTaskPolicy", ttMetrics, map[string]string{
		"visible": "AWS/SQS ApproximateNumberOfMessagesVisible QueueName=GetAtt:JobQueue.QueueName",
		"held":    "AWS/SQS ApproximateNumberOfMessagesNotVisible QueueName=GetAtt:JobQueue.QueueName",
		"tasks":   "ECS/ContainerInsights RunningTaskCount ClusterName=Ref:Cluster ServiceName=GetAtt:Service.Name",
	})
	if expr := returnedExpression(ttMetrics); !strings.Contains(expr, "/") || !strings.Contains(expr, "tasks") {
		t.Errorf("target tracking expression %q does not divide by the running tasks", expr)
	}

	// RunningTaskCount comes from Container Insights.
	cluster, err := tpl.GetECSClusterWithName("Cluster")
	if err != nil {
		t.Fatal(err)
	}
	insights := false
	for _, s := range cluster.ClusterSettings {
		insights = insights || (deref(s.Name) == "containerInsights" && deref(s.Value) == "enabled")
	}
	if !insights {
		t.Error("the cluster has no Container Insights: RunningTaskCount would be missing")
	}

	// Permissions: protection in a service, StopTask for standalone tasks
	// only, both on this cluster's tasks.
	const ownTasks = "Sub:arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${Cluster}/*"
	for name, actions := range map[string][]string{
		"ProtectOwnTaskPolicy": {"ecs:GetTaskProtection", "ecs:UpdateTaskProtection"},
		"StopOwnTaskPolicy":    {"ecs:StopTask"},
	} {
		props := resourceProps(t, raw, name)
		if got := describeResource(props["RoleName"]); got != "Ref:TaskRole" {
			t.Errorf("%s is attached to %s, want the task role", name, got)
		}
		stmts := policyStatements(map[string]any{"doc": props["PolicyDocument"]})
		var got []string
		for _, st := range stmts {
			got = append(got, st.actions...)
			for _, r := range st.resources {
				if describeResource(r) != ownTasks {
					t.Errorf("%s grants %v on %s, want only %s", name, st.actions, describeResource(r), ownTasks)
				}
			}
			cond, _ := st.condition["ArnEquals"].(map[string]any)
			if describeResource(cond["ecs:cluster"]) != "GetAtt:Cluster.Arn" {
				t.Errorf("%s: no ArnEquals ecs:cluster condition on the cluster", name)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, actions) {
			t.Errorf("%s grants %v, want %v", name, got, actions)
		}
	}
	for _, st := range policyStatements(raw) {
		if slices.Contains(st.actions, "ecs:StopTask") && !strings.Contains(st.path, "StopOwnTaskPolicy") {
			t.Errorf("%s grants ecs:StopTask outside the standalone policy", st.path)
		}
	}

	// The worker learns its mode from the stack.
	envMode := ""
	for _, c := range resourceProps(t, raw, "TaskDefinition")["ContainerDefinitions"].([]any) {
		for _, kv := range c.(map[string]any)["Environment"].([]any) {
			if e := kv.(map[string]any); e["Name"] == "ECS_TASK_MODE" {
				envMode = describeResource(e["Value"])
			}
		}
	}
	if envMode != "Ref:DeploymentMode" {
		t.Errorf("ECS_TASK_MODE is %q, want the DeploymentMode parameter", envMode)
	}
}

// mathIdentRE matches the names in a metric math expression.
var mathIdentRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// mathFunctions are the metric math words that are no metric ids.
var mathFunctions = []string{"IF", "FILL", "MAX", "MIN", "AND", "OR", "SUM", "AVG"}

// checkMetricMath checks a list of metric data queries: each metric id in
// want reads that metric (namespace, name, dimensions), exactly one query
// returns data, an expression that uses only declared ids.
func checkMetricMath(t *testing.T, where string, queries []any, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	ids := map[string]bool{}
	returned := 0
	for _, q := range queries {
		qm, _ := q.(map[string]any)
		id, _ := qm["Id"].(string)
		ids[id] = true
		if qm["ReturnData"] == true {
			returned++
			expr, _ := qm["Expression"].(string)
			if expr == "" {
				t.Errorf("%s: the returned query %s is no expression", where, id)
			}
			for _, name := range mathIdentRE.FindAllString(expr, -1) {
				if !slices.Contains(mathFunctions, name) && !ids[name] {
					t.Errorf("%s: expression %q uses %s, declared before it? (ids %v)", where, expr, name, ids)
				}
			}
			continue
		}
		ms, _ := qm["MetricStat"].(map[string]any)
		m, _ := ms["Metric"].(map[string]any)
		desc := []string{m["Namespace"].(string) + " " + m["MetricName"].(string)}
		dims, _ := m["Dimensions"].([]any)
		for _, d := range dims {
			dm := d.(map[string]any)
			desc = append(desc, dm["Name"].(string)+"="+describeResource(dm["Value"]))
		}
		got[id] = strings.Join(desc, " ")
	}
	if returned != 1 {
		t.Errorf("%s: %d queries return data, want 1", where, returned)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: metric %s is %q, want %q", where, id, got[id], w)
		}
	}
}

// returnedExpression returns the expression of the query that returns data.
func returnedExpression(queries []any) string {
	for _, q := range queries {
		if qm, _ := q.(map[string]any); qm["ReturnData"] == true {
			s, _ := qm["Expression"].(string)
			return s
		}
	}
	return ""
}
