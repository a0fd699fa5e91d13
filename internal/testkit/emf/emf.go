// Package emf checks lines against CloudWatch's embedded metric format
// specification (the _aws member, its Timestamp and CloudWatchMetrics
// directives, each directive's Namespace, Dimensions and Metrics, the
// units, and the target members the directives name), so that a test can
// assert what CloudWatch Logs would extract.
package emf

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// units are the units CloudWatch accepts (MetricDatum's Unit).
var units = []string{"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
	"Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
	"Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
	"Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}

// Metric is one value a line publishes, with its directive's namespace,
// unit and dimensions (each dimension set resolved to its values).
type Metric struct {
	Namespace  string
	Name       string
	Unit       string
	Value      float64
	Dimensions []map[string]string
}

// Parse validates line as an EMF document and returns the metrics it
// publishes. A line that is no EMF document (no _aws member) returns
// ok false and no error; one that has _aws but breaks the specification
// returns an error saying how.
func Parse(line string) (metrics []Metric, ok bool, err error) {
	var root map[string]json.RawMessage
	if json.Unmarshal([]byte(line), &root) != nil {
		return nil, false, nil
	}
	rawAWS, ok := root["_aws"]
	if !ok {
		return nil, false, nil
	}
	var aws struct {
		Timestamp         *json.Number `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  *string    `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct {
				Name *string `json:"Name"`
				Unit string  `json:"Unit"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	}
	dec := json.NewDecoder(strings.NewReader(string(rawAWS)))
	dec.UseNumber()
	if err := dec.Decode(&aws); err != nil {
		return nil, true, fmt.Errorf("_aws: %w", err)
	}
	if aws.Timestamp == nil {
		return nil, true, fmt.Errorf("_aws.Timestamp is missing")
	}
	if ts, err := aws.Timestamp.Int64(); err != nil || ts <= 0 {
		return nil, true, fmt.Errorf("_aws.Timestamp %s is not milliseconds since the epoch", aws.Timestamp)
	}
	if len(aws.CloudWatchMetrics) == 0 {
		return nil, true, fmt.Errorf("_aws.CloudWatchMetrics is empty")
	}
	for i, d := range aws.CloudWatchMetrics {
		where := fmt.Sprintf("_aws.CloudWatchMetrics[%d]", i)
		if d.Namespace == nil || *d.Namespace == "" || len(*d.Namespace) > 1024 {
			return nil, true, fmt.Errorf("%s.Namespace must be a string of 1-1024 characters", where)
		}
		if d.Dimensions == nil {
			return nil, true, fmt.Errorf("%s.Dimensions is missing", where)
		}
		var sets []map[string]string
		for _, set := range d.Dimensions {
			if len(set) > 30 {
				return nil, true, fmt.Errorf("%s: a dimension set of %d dimensions, more than 30", where, len(set))
			}
			values := map[string]string{}
			for _, name := range set {
				var v string
				raw, ok := root[name]
				if !ok || json.Unmarshal(raw, &v) != nil {
					return nil, true, fmt.Errorf("%s: dimension %q has no string member at the root", where, name)
				}
				if v == "" || len(v) > 1024 {
					return nil, true, fmt.Errorf("%s: dimension %q's value must be 1-1024 characters", where, name)
				}
				values[name] = v
			}
			sets = append(sets, values)
		}
		if len(d.Metrics) == 0 || len(d.Metrics) > 100 {
			return nil, true, fmt.Errorf("%s.Metrics must hold 1-100 metrics, holds %d", where, len(d.Metrics))
		}
		for _, m := range d.Metrics {
			if m.Name == nil || *m.Name == "" || len(*m.Name) > 1024 {
				return nil, true, fmt.Errorf("%s: a metric without a name of 1-1024 characters", where)
			}
			if m.Unit != "" && !slices.Contains(units, m.Unit) {
				return nil, true, fmt.Errorf("%s: metric %s has unit %q, not one of CloudWatch's", where, *m.Name, m.Unit)
			}
			var value float64
			raw, ok := root[*m.Name]
			if !ok || json.Unmarshal(raw, &value) != nil {
				return nil, true, fmt.Errorf("%s: metric %s has no number member at the root", where, *m.Name)
			}
			metrics = append(metrics, Metric{Namespace: *d.Namespace, Name: *m.Name, Unit: m.Unit, Value: value, Dimensions: sets})
		}
	}
	return metrics, true, nil
}
