package bench

import "testing"

func benchExecute(b *testing.B, e *env) { b.Fatal("todo") }
func benchMemory(b *testing.B, e *env)  { b.Fatal("todo") }
