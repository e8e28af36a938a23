<?php
// Sets the worker's own Server, Date and X-Pad headers: the front end's own must be the only ones.
header('Server: php-app/1.0');
header('Date: Thu, 01 Jan 1970 00:00:00 GMT');
header('X-Pad: avoid browser bug');
header('Content-Type: text/plain');
echo "php with its own server and date\n";
