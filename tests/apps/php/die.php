<?php
// The php-cgi process serving this request dies mid-request (SIGKILL), after its headers are due.
posix_kill(getmypid(), 9);
echo "not reached\n";
