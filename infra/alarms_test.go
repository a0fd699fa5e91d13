package infra

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/metrics"
)

// alarmTarget is what one alarm watches, as the template says it.
type alarmTarget struct {
	namespace, metric, stat string
	dims                    map[string]string
}

func metricOf(props map[string]any) alarmTarget {
	dims := map[string]string{}
	list, _ := props["Dimensions"].([]any)
	for _, d := range list {
		m, _ := d.(map[string]any)
		dims[fmt.Sprint(m["Name"])] = describeResource(m["Value"])
	}
	stat := fmt.Sprint(props["Statistic"])
	if s, ok := props["Stat"]; ok {
		stat = fmt.Sprint(s)
	}
	return alarmTarget{fmt.Sprint(props["Namespace"]), fmt.Sprint(props["MetricName"]), stat, dims}
}

// TestTemplateAlarms: each alarm watches the metric the README names, with
// its threshold, and notifies the AlarmTopicArn topic when one is given.
func TestTemplateAlarms(t *testing.T) {
	raw := rawTemplate(t)
	tests := []struct {
		alarm     string
		target    alarmTarget
		operator  string
		threshold string
	}{
		{"JobDeadLetterAlarm", alarmTarget{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", map[string]string{"QueueName": "GetAtt:JobDeadLetterQueue.QueueName"}}, "GreaterThanThreshold", "0"},
		{"OldestJobAlarm", alarmTarget{"AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", map[string]string{"QueueName": "GetAtt:JobQueue.QueueName"}}, "GreaterThanThreshold", "Ref:OldestJobAlarmSeconds"},
		{"BudgetExceededAlarm", alarmTarget{"ClaudeCodeAstro", metrics.BudgetExceeded, "Sum", map[string]string{"Service": "worker"}}, "GreaterThanThreshold", "0"},
	}
	for _, tt := range tests {
		p := resourceProps(t, raw, tt.alarm)
		got := metricOf(p)
		if got.namespace != tt.target.namespace || got.metric != tt.target.metric || got.stat != tt.target.stat || !maps.Equal(got.dims, tt.target.dims) {
			t.Errorf("%s watches %+v, want %+v", tt.alarm, got, tt.target)
		}
		if p["ComparisonOperator"] != tt.operator || describeResource(p["Threshold"]) != tt.threshold {
			t.Errorf("%s: %v %v, want %s %s", tt.alarm, p["ComparisonOperator"], describeResource(p["Threshold"]), tt.operator, tt.threshold)
		}
		checkActions(t, tt.alarm, p)
	}

	// The rates: metric math over two metrics of ours.
	rates := []struct {
		alarm            string
		parts            map[string]alarmTarget
		threshold        string
		numerator, total string
	}{
		{"JobFailureRateAlarm", map[string]alarmTarget{
			"failed":    {"ClaudeCodeAstro", metrics.Jobs, "Sum", map[string]string{"Service": "worker", "Status": "failed"}},
			"succeeded": {"ClaudeCodeAstro", metrics.Jobs, "Sum", map[string]string{"Service": "worker", "Status": "succeeded"}},
		}, "Ref:JobFailureRateAlarmPercent", "failed", "succeeded"},
		{"Router5xxRateAlarm", map[string]alarmTarget{
			"errors":   {"ClaudeCodeAstro", metrics.Router5xx, "Sum", map[string]string{"Service": "router"}},
			"requests": {"ClaudeCodeAstro", metrics.RouterRequests, "Sum", map[string]string{"Service": "router"}},
		}, "5", "errors", "requests"},
	}
	for _, tt := range rates {
		p := resourceProps(t, raw, tt.alarm)
		list, _ := p["Metrics"].([]any)
		found := map[string]alarmTarget{}
		var expr string
		returned := 0
		for _, q := range list {
			m, _ := q.(map[string]any)
			if m["ReturnData"] == true {
				returned++
				expr = fmt.Sprint(m["Expression"])
				continue
			}
			stat, _ := m["MetricStat"].(map[string]any)
			metric, _ := stat["Metric"].(map[string]any)
			target := metricOf(metric)
			target.stat = fmt.Sprint(stat["Stat"])
			found[fmt.Sprint(m["Id"])] = target
		}
		for id, want := range tt.parts {
			if got := found[id]; got.namespace != want.namespace || got.metric != want.metric || got.stat != want.stat || !maps.Equal(got.dims, want.dims) {
				t.Errorf("%s: query %s watches %+v, want %+v", tt.alarm, id, got, want)
			}
		}
		if returned != 1 || !strings.Contains(expr, "100 * FILL("+tt.numerator+", 0)") || !strings.Contains(expr, tt.total) {
			t.Errorf("%s: %d queries return data, expression %q: want one percentage of %s", tt.alarm, returned, expr, tt.numerator)
		}
		if describeResource(p["Threshold"]) != tt.threshold || p["ComparisonOperator"] != "GreaterThanThreshold" || p["TreatMissingData"] != "notBreaching" {
			t.Errorf("%s: %v %v, missing data %v", tt.alarm, p["ComparisonOperator"], describeResource(p["Threshold"]), p["TreatMissingData"])
		}
		checkActions(t, tt.alarm, p)
	}
}

// checkActions: an alarm notifies the topic, in alarm and back to OK, when
// AlarmTopicArn is given, and nobody otherwise.
func checkActions(t *testing.T, alarm string, p map[string]any) {
	t.Helper()
	for _, key := range []string{"AlarmActions", "OKActions"} {
		b, _ := json.Marshal(p[key])
		if string(b) != `{"Fn::If":["HasAlarmTopic",[{"Ref":"AlarmTopicArn"}],{"Ref":"AWS::NoValue"}]}` {
			t.Errorf("%s.%s = %s, want the AlarmTopicArn topic when it is given", alarm, key, b)
		}
	}
}

// TestTemplateDashboard: the dashboard's body is JSON once its ${...} are
// filled, and it shows every metric of the catalog (each under the
// dimensions the worker writes) and the job queue's backlog and age.
func TestTemplateDashboard(t *testing.T) {
	p := resourceProps(t, rawTemplate(t), "FleetDashboard")
	sub, _ := p["DashboardBody"].(map[string]any)
	body, ok := sub["Fn::Sub"].(string)
	if !ok {
		t.Fatalf("DashboardBody is %T, want a !Sub string", p["DashboardBody"])
	}
	filled := regexp.MustCompile(`\$\{[A-Za-z:.]+\}`).ReplaceAllString(body, "x")
	var dash struct {
		Widgets []struct {
			Properties struct {
				Metrics [][]any `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(filled), &dash); err != nil {
		t.Fatalf("the dashboard body is not JSON: %v", err)
	}
	shown := map[string]bool{}
	for _, w := range dash.Widgets {
		for _, m := range w.Properties.Metrics {
			if len(m) < 2 {
				continue
			}
			ns, name := fmt.Sprint(m[0]), fmt.Sprint(m[1])
			shown[ns+"/"+name] = true
			if ns != metrics.Namespace {
				continue
			}
			spec, ok := metrics.Lookup(name)
			if !ok {
				t.Errorf("the dashboard shows %s, which no worker writes", name)
				continue
			}
			var dims []string
			for i := 2; i+1 < len(m); i += 2 {
				if s, ok := m[i].(string); ok {
					dims = append(dims, s)
				}
			}
			if !slices.ContainsFunc(spec.Dimensions, func(set []string) bool { return slices.Equal(set, dims) }) {
				t.Errorf("the dashboard shows %s by %v, which is none of its dimension sets %v", name, dims, spec.Dimensions)
			}
		}
	}
	for _, spec := range metrics.Catalog {
		if !shown[metrics.Namespace+"/"+spec.Name] {
			t.Errorf("the dashboard does not show %s", spec.Name)
		}
	}
	for _, m := range []string{"AWS/SQS/ApproximateNumberOfMessagesVisible", "AWS/SQS/ApproximateAgeOfOldestMessage"} {
		if !shown[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

// TestTemplateBackups: the workspace file system is backed up.
func TestTemplateBackups(t *testing.T) {
	fs := openTemplate(t).Resources["FileSystem"]
	b, _ := json.Marshal(fs)
	if !strings.Contains(string(b), `"BackupPolicy":{"Status":"ENABLED"}`) {
		t.Errorf("FileSystem has no enabled BackupPolicy: %s", b)
	}
}
