<?php
// The smallest PHP answer: checks that a PHP pool serves at all.
echo "hello from php\n";
