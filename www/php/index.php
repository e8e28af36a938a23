<?php
header('Content-Type: text/plain');
echo "hello from php ", PHP_VERSION, " (pid ", getmypid(), ")\n";
echo "REQUEST_URI=", $_SERVER['REQUEST_URI'], "\n";
