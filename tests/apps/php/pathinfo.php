<?php
// How the front end split the URL: one NAME=value line each (empty when not set).
header('Content-Type: text/plain');
foreach (['SCRIPT_NAME', 'PATH_INFO', 'SCRIPT_FILENAME', 'REQUEST_URI', 'QUERY_STRING'] as $name) {
    echo $name, '=', $_SERVER[$name] ?? '', "\n";
}
