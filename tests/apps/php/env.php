<?php
// Prints every $_SERVER entry as key=value, sorted by key, so tests can check the FastCGI
// params the front end sent (SCRIPT_FILENAME, HTTPS, REMOTE_ADDR, HTTP_* ...).
header('Content-Type: text/plain');
$server = $_SERVER;
ksort($server, SORT_STRING);
foreach ($server as $key => $value) {
    echo $key, '=', is_scalar($value) ? $value : json_encode($value), "\n";
}
