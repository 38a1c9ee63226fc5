# The runner must be able to fail: each fixture suite in t/runner/fixtures (not collected by
# `prove -r t/`, their extension is .suite) breaks one rule, and running it must report that
# failure and exit non-zero.
use strict;
use warnings;
use Test::More;
use t::Pubsub ();    # only to learn which backend runs the suites

my %expect = (
    'wrong_body.suite'       => qr/not ok \d+ - .*TEST 1: wrong body - response_body/,
    'wrong_status.suite'     => qr/not ok \d+ - .*TEST 1: wrong status - status code ok/,
    'missing_log.suite'      => qr/not ok \d+ - .*TEST 1: missing log line - pattern "this line is never logged"/,
    'forbidden_log.suite'    => qr/not ok \d+ - .*TEST 1: forbidden log line present - pattern "forbidden marker" should not match/,
    'timeout_no_abort.suite' => qr/not ok \d+ - ERROR: client socket timed out - .*TEST 1: timeout without abort/,
);

for my $fixture (sort keys %expect) {
    my @inc = map { "-I$_" } grep { !ref } @INC;
    my $cmd = join ' ', map { "'$_'" } $^X, @inc, "t/runner/fixtures/$fixture";
    my $out = `$cmd 2>&1`;
    my $status = $? >> 8;
    # The real Test::Nginx exits 0 after its timeout report; the bundled runner must not.
    isnt($status, 0, "$fixture exits non-zero")
        unless $fixture eq 'timeout_no_abort.suite' && $t::Pubsub::Backend ne 't::NginxRunner';
    like($out, $expect{$fixture}, "$fixture reports the failure");
}

# ONLY and LAST: the blocks that would fail are not run, so these pass.
for my $fixture ('only.suite', 'last.suite') {
    my @inc = map { "-I$_" } grep { !ref } @INC;
    my $cmd = join ' ', map { "'$_'" } $^X, @inc, "t/runner/fixtures/$fixture";
    my $out = `$cmd 2>&1`;
    is($? >> 8, 0, "$fixture exits zero");
    unlike($out, qr/not ok/, "$fixture runs only the chosen blocks");
    like($out, qr/ok \d+ - .*TEST (2: the only block run|1: runs and is the last)/, "$fixture ran its block");
}

done_testing();
