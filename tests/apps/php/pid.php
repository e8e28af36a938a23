<?php
// The worker that answers: recycling tests count the requests each php-cgi process served.
echo getmypid(), "\n";
