<?php
// Answers after ?ms= milliseconds with the pid of the php-cgi process that served it.
usleep((int)($_GET['ms'] ?? 0) * 1000);
echo getmypid(), "\n";
