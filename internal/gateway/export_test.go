package gateway

// CheckPush is checkPush, for the tests of hand-made push requests.
var CheckPush = checkPush
